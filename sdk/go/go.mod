module example.invalid/gofer/sdk/go

go 1.19

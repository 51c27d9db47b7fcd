module example.invalid/gofer/examples/go-dag

go 1.19

require example.invalid/gofer/sdk/go v0.0.0

// The SDK from this repository. Outside it, point the replace at your checkout of Gofer's sdk/go (or vendor it).
replace example.invalid/gofer/sdk/go => ../../sdk/go

module example.invalid/gofer/tests/earlier-extension

go 1.19

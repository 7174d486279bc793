module example.com/slipway-go

go 1.23

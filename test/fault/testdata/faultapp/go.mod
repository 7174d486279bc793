module example.com/faultapp

go 1.23

module github.com/acme/shop

go 1.22.5

toolchain go1.23.4

require github.com/acme/lib v0.0.0

replace github.com/acme/lib => ./lib

// Command api serves the shop.
package main

func main() {}

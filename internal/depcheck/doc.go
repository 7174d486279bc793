// Package depcheck holds no code: its test pins which internal packages
// each package of Slipway may import, and the few rules that the import
// graph alone does not show (see depcheck_test.go). A change that adds an
// edge must say so there, where a reviewer sees it.
package depcheck

package router

// HeaderRule is the classification's word on one header name, for the
// tests in package router_test.
type HeaderRule struct {
	Name      string // canonical
	InRequest bool   // reaches the app as the client sent it
	HopByHop  bool   // never passed on, in either direction
}

// HeaderRules lists the headers the classification names (every other
// header is end to end).
func HeaderRules() []HeaderRule {
	var rules []HeaderRule
	for _, h := range headerKinds {
		rules = append(rules, HeaderRule{Name: h.name, InRequest: h.kind.inRequest(), HopByHop: h.kind.hopByHop()})
	}
	return rules
}

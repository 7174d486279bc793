package project

import "strconv"

// PreviewEnvironment names the environment that previews pull request n
// (project setting "previews"): pr-<n>, so its hostname is
// <project>-pr-<n>.<base> and it is created under the rules of every
// environment (CreateEnvironment: a name and hostname no other project or
// environment has).
func PreviewEnvironment(n int) string { return "pr-" + strconv.Itoa(n) }

// Package rego is the Open Policy Agent implementation of policy.Decider.
//
// New loads Rego modules and JSON data from a file system (the embedded
// policies.FS, or a directory), compiles the query once with
// rego.PrepareForEval and evaluates it per decision. The Decider is
// fail-closed: an evaluation error, an undefined or malformed result and a
// timeout all give Allow == false together with a non-nil error. RunTests
// runs the Rego unit tests (*_test.rego) for `sluice policy test`.
//
// OPA is a heavy dependency; it is imported only here so that the rest of
// sluice depends on the small policy package instead.
package rego

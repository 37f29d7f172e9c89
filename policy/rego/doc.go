// Package rego is the Open Policy Agent implementation of policy.Decider.
//
// New loads Rego modules and JSON data from a file system (the embedded
// policies.FS, or a directory), compiles the query once with
// rego.PrepareForEval and evaluates it per decision. The Decider is
// fail-closed: an evaluation error, an undefined or malformed result and a
// timeout all give Allow == false together with a non-nil error. RunTests
// runs the Rego unit tests (*_test.rego) for `sluice policy test`.
//
// Reloader is the hot-reloading policy.Snapshotter: it follows a directory
// or an OPA bundle (file or URL, signature verified when a key is set),
// compiles and tests each changed policy before it goes live, keeps the
// live revision when a change is broken, and memoizes decisions per
// revision. Snapshot pins one revision for a batch.
//
// OPA is a heavy dependency; it is imported only here so that the rest of
// sluice depends on the small policy package instead.
package rego

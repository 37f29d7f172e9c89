// Package policy decides where a slice of data may legally be processed.
//
// It owns the policy Input document, the Decision value, and the Decider
// interface, plus a memoizing Decider that evaluates each distinct
// (attributes, executor) pair once per policy revision. The OPA engine
// lives in policy/rego so that this package does not depend on it.
package policy

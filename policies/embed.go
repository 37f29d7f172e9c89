// Package policies holds the residency policies sluice ships: Rego modules
// (package sluice, queried at data.sluice.route), their Rego unit tests and
// the data they read (data.json). README.md explains them to the compliance
// officers who change them.
package policies

import "embed"

// FS holds every shipped *.rego (tests included) and *.json file. The
// policy/rego loader skips *_test.rego when it builds a Decider and reads
// them only for RunTests.
//
//go:embed *.rego *.json
var FS embed.FS

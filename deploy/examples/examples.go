// Package examples embeds the example pipeline specs in deploy/examples,
// so `sluice demo` can run demo.yaml and tests can check that every example
// still parses.
package examples

import "embed"

// FS holds the *.yaml example specs at its root.
//
//go:embed *.yaml
var FS embed.FS

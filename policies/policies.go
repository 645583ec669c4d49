// Package policies holds the Rego the engine runs by default: the permission
// catalog (catalog.rego), the mint decision (mint.rego) and the route table
// (routes.rego), each beside its tests (*_test.rego), which the engine runs
// before it uses the rules. A directory given to the engine replaces these
// files; copy them there to start.
package policies

import "embed"

// FS holds every .rego file of this directory, tests included.
//
//go:embed *.rego
var FS embed.FS

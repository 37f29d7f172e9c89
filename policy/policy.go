package policy

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// ErrNoAllowedExecutor means the policy allows no candidate executor for a
// slice of data: the rows are quarantined, never processed.
var ErrNoAllowedExecutor = errors.New("policy: no executor allowed")

// Input is the document a Rego policy sees as `input`. Its JSON shape is the
// contract compliance officers write against (policies/README.md).
type Input struct {
	Pipeline Pipeline `json:"pipeline"`
	Data     Data     `json:"data"`
	Executor Executor `json:"executor"`
}

// Pipeline names the pipeline asking and what it is for.
type Pipeline struct {
	Name    string `json:"name"`
	Purpose string `json:"purpose"`
}

// Data describes one slice of rows that share the attributes the policy
// reads.
type Data struct {
	// Jurisdiction is an ISO 3166-1 alpha-2 country code ("DE").
	Jurisdiction string `json:"jurisdiction"`
	// Region is a coarse region derived from the jurisdiction ("eu").
	Region string `json:"region,omitempty"`
	// Classes is the sorted set of data classes present ("pii", "phi").
	Classes []string `json:"classes"`
	// Columns lists the columns and their classes.
	Columns []Column `json:"columns,omitempty"`
}

// Column is a column of the slice and its classification tags.
type Column struct {
	Name    string   `json:"name"`
	Classes []string `json:"classes,omitempty"`
}

// Executor describes a candidate executor and where it runs.
type Executor struct {
	ID             string   `json:"id"`
	Kind           string   `json:"kind"` // "onprem" or "cloud"
	Provider       string   `json:"provider,omitempty"`
	Site           string   `json:"site,omitempty"`
	Region         string   `json:"region,omitempty"`
	Jurisdiction   string   `json:"jurisdiction"`
	Certifications []string `json:"certifications,omitempty"`
}

// Obligations are transformations that must be applied to the data before
// it reaches the executor the decision is about.
type Obligations struct {
	Mask []string `json:"mask,omitempty"`
	Drop []string `json:"drop,omitempty"`
	Hash []string `json:"hash,omitempty"`
}

// Empty reports whether no obligation applies.
func (o Obligations) Empty() bool { return len(o.Mask)+len(o.Drop)+len(o.Hash) == 0 }

// Decision is the answer for one (data slice, executor) pair.
type Decision struct {
	Allow bool `json:"allow"`
	// Reasons are the deny messages (why not), or allow reasons.
	Reasons     []string    `json:"reasons,omitempty"`
	Obligations Obligations `json:"obligations"`
	// Rules are the labels of the rules that fired, from Rego annotations
	// (e.g. "GDPR Art. 44").
	Rules []string `json:"rules,omitempty"`
	// DecisionID identifies this evaluation for audit.
	DecisionID string `json:"decision_id"`
	// Revision is the policy revision that decided (bundle revision or
	// "sha256:" + hash of the loaded modules).
	Revision string `json:"revision"`
}

// Decider evaluates the residency policy. Implementations are safe for
// concurrent use. A Decider is fail-closed: an evaluation error, an
// undefined result or a timeout yields Allow == false and a non-nil error.
type Decider interface {
	Decide(ctx context.Context, in Input) (Decision, error)
	// Revision identifies the loaded policy.
	Revision() string
}

// Snapshotter is a Decider whose policy can change while it runs (hot
// reload). Snapshot returns a Decider pinned to the revision current now, so
// a batch is decided under one revision from its start to its end.
type Snapshotter interface {
	Decider
	Snapshot() Decider
}

// DenyError is a deny as a value: it carries the audit fields.
type DenyError struct {
	DecisionID string
	Revision   string
	Reasons    []string
}

func (e *DenyError) Error() string {
	return fmt.Sprintf("policy: denied (decision %s, revision %s): %s", e.DecisionID, e.Revision, strings.Join(e.Reasons, "; "))
}

// Unwrap lets errors.Is(err, ErrNoAllowedExecutor) match.
func (e *DenyError) Unwrap() error { return ErrNoAllowedExecutor }

package sim

import (
	"context"
	"sync"
	"testing"

	"github.com/sluice-dev/sluice/policies"
	"github.com/sluice-dev/sluice/policy"
	"github.com/sluice-dev/sluice/policy/rego"
)

var (
	deciderOnce sync.Once
	decider     *policy.Memo
	deciderErr  error
)

// shipped returns the shipped policies, memoized, compiled once per test
// binary.
func shipped(t testing.TB) policy.Decider {
	t.Helper()
	deciderOnce.Do(func() {
		d, err := rego.New(context.Background(), rego.Config{FS: policies.FS})
		deciderErr = err
		decider = policy.NewMemo(d)
	})
	if deciderErr != nil {
		t.Fatal(deciderErr)
	}
	return decider
}

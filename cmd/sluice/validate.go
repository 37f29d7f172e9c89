package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/sluice-dev/sluice/transform"
)

func cmdValidate(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("validate", "validate -f SPEC [-o json]",
		`Checks a pipeline spec: unknown keys, wrong types, unknown feature ops and
bad parameters, features that read fields the schema lacks, references to
sinks or executors that do not exist, missing sections. Every problem is
printed as FILE:LINE:COL: FIELD: MESSAGE and the exit status is 1. A valid
spec prints a one-screen summary and exits 0.

Example:
  sluice validate -f deploy/examples/card-transactions.yaml
`, stderr)
	file := fs.String("f", "", "pipeline spec `file` (YAML)")
	var out outputFlag
	out.register(fs)
	asJSON, err := parseOutput(fs, &out, args)
	if err != nil {
		return err
	}
	if *file == "" {
		return fmt.Errorf("%w: validate needs -f SPEC", errUsage)
	}
	spec, err := transform.Load(*file)
	var verr *transform.ValidationError
	switch {
	case errors.As(err, &verr):
		if asJSON {
			probs := make([]map[string]any, len(verr.Problems))
			for i, p := range verr.Problems {
				probs[i] = map[string]any{"file": p.File, "line": p.Line, "column": p.Column, "field": p.Field, "message": p.Msg}
			}
			writeJSON(stdout, map[string]any{"valid": false, "problems": probs})
		} else {
			fmt.Fprintln(stderr, verr.Error())
			fmt.Fprintf(stderr, "%s: %d problem(s)\n", *file, len(verr.Problems))
		}
		return errFailed
	case err != nil:
		return err
	}
	if asJSON {
		writeJSON(stdout, map[string]any{"valid": true, "spec": spec})
		return nil
	}
	spec.Summary(stdout)
	return nil
}

func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

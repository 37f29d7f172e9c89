package rego

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"
)

// bundle is what load found in a file system: parsed modules and the merged
// data document.
type bundle struct {
	modules  map[string]*ast.Module
	data     map[string]any
	revision string
}

// isTest reports whether name is a Rego test module.
func isTest(name string) bool { return strings.HasSuffix(name, "_test.rego") }

// load reads every *.rego and *.json file under fsys. Test modules are
// included only when withTests is true. A JSON file is mounted under the
// data path of its directory (policies/x/data.json → data.x), the
// convention `opa eval -d` and `opa test` use. The revision hashes the
// sorted paths and contents of the non-test files.
func load(fsys fs.FS, withTests bool) (*bundle, error) {
	var paths []string
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		switch {
		case strings.HasSuffix(p, ".rego"):
			if isTest(p) && !withTests {
				return nil
			}
			paths = append(paths, p)
		case strings.HasSuffix(p, ".json"):
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("policy/rego: list policy files: %w", err)
	}
	sort.Strings(paths)

	b := &bundle{modules: map[string]*ast.Module{}, data: map[string]any{}}
	h := sha256.New()
	opts := ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true}
	for _, p := range paths {
		raw, err := fs.ReadFile(fsys, p)
		if err != nil {
			return nil, fmt.Errorf("policy/rego: read %s: %w", p, err)
		}
		if !isTest(p) {
			// Length-prefixed so that moving bytes between a path and
			// its content cannot produce the same hash.
			fmt.Fprintf(h, "%d:%s%d:", len(p), p, len(raw))
			h.Write(raw)
		}
		if strings.HasSuffix(p, ".rego") {
			m, err := ast.ParseModuleWithOpts(p, string(raw), opts)
			if err != nil {
				return nil, fmt.Errorf("policy/rego: parse %s: %w", p, err)
			}
			b.modules[p] = m
			continue
		}
		var doc any
		if err := util.UnmarshalJSON(raw, &doc); err != nil {
			return nil, fmt.Errorf("policy/rego: parse %s: %w", p, err)
		}
		obj, ok := doc.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("policy/rego: %s: data file must hold a JSON object", p)
		}
		if err := mount(b.data, path.Dir(p), obj); err != nil {
			return nil, fmt.Errorf("policy/rego: %s: %w", p, err)
		}
	}
	b.revision = "sha256:" + hex.EncodeToString(h.Sum(nil))
	return b, nil
}

// mount merges obj into root under the data path named by dir.
func mount(root map[string]any, dir string, obj map[string]any) error {
	node := root
	if dir != "." {
		for _, seg := range strings.Split(dir, "/") {
			next, ok := node[seg]
			if !ok {
				m := map[string]any{}
				node[seg] = m
				node = m
				continue
			}
			m, ok := next.(map[string]any)
			if !ok {
				return fmt.Errorf("data path %s conflicts with a value loaded before", dir)
			}
			node = m
		}
	}
	return merge(node, obj, dir)
}

// merge copies src into dst; two files may not define the same leaf.
func merge(dst, src map[string]any, at string) error {
	for k, v := range src {
		old, ok := dst[k]
		if !ok {
			dst[k] = v
			continue
		}
		om, ok1 := old.(map[string]any)
		nm, ok2 := v.(map[string]any)
		if !ok1 || !ok2 {
			return fmt.Errorf("data key %s/%s is defined twice", at, k)
		}
		if err := merge(om, nm, at+"/"+k); err != nil {
			return err
		}
	}
	return nil
}

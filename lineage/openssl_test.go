package lineage

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSignatureVerifiesWithOpenSSL runs the commands docs/lineage.md and
// docs/auditing.md give auditors who trust no sluice code: with sed,
// base64 and openssl alone, a segment's signature line must verify with
// the published key, and fail once the segment is altered.
func TestSignatureVerifiesWithOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed: the auditor's by-hand check is not exercised")
	}
	for _, tool := range []string{"sh", "sed", "tail", "base64"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed: the auditor's by-hand check is not exercised", tool)
		}
	}
	ctx := context.Background()
	store := newMemStore()
	w := newTestWriter(t, store)
	if err := w.PublishKey(ctx); err != nil {
		t.Fatal(err)
	}
	info := appendBatches(t, w, "events-3", "events", 3, 100, 10, 1)[0]
	dir := t.TempDir()
	file := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	file("ed25519.pub", store.get("lineage/pipeline=card-fraud/_keys/ed25519.pub"))
	// The commands of docs/lineage.md, with the segment at $seg.
	const recipe = `sed '$d' "$seg" > events
tail -n 1 "$seg" | sed 's/.*"signature":"\([^"]*\)".*/\1/' | base64 -d > sig
openssl dgst -sha256 -binary events > digest
openssl pkeyutl -verify -pubin -inkey ed25519.pub -rawin -in digest -sigfile sig`
	check := func(segment []byte) (string, error) {
		cmd := exec.Command("sh", "-c", recipe)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "seg="+file("seg.ndjson", segment), "PATH="+filepath.Dir(openssl)+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	data := store.get(info.Key)
	if out, err := check(data); err != nil || !strings.Contains(out, "Signature Verified Successfully") {
		if strings.Contains(out, "rawin") || strings.Contains(out, "unknown option") {
			t.Skipf("this openssl cannot verify raw ed25519 (needs 3.0 or later): %s", out)
		}
		t.Fatalf("openssl rejects an intact segment: %v\n%s", err, out)
	}
	altered := []byte(strings.Replace(string(data), `"events"`, `"evenTs"`, 1))
	if out, err := check(altered); err == nil || strings.Contains(out, "Verified Successfully") {
		t.Fatalf("openssl accepts an altered segment:\n%s", out)
	}
}

package lineage

import (
	"context"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSignatureVerifiesWithOpenSSL runs the commands docs/lineage.md and
// docs/auditing.md give auditors who trust no sluice code: openssl alone
// must accept a segment's signature with the published key, and reject it
// once the segment is altered.
func TestSignatureVerifiesWithOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed: the auditor's by-hand check is not exercised")
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
	pub := file("ed25519.pub", store.get("lineage/pipeline=card-fraud/_keys/ed25519.pub"))
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(store.get(info.Key + sigExt))))
	if err != nil {
		t.Fatal(err)
	}
	sig := file("sig", raw) // base64 -d SEG.sig > /tmp/sig
	check := func(segment []byte) (string, error) {
		seg := file("seg.ndjson", segment)
		digest := filepath.Join(dir, "digest")
		// openssl dgst -sha256 -binary SEG > /tmp/digest
		if out, err := exec.Command(openssl, "dgst", "-sha256", "-binary", "-out", digest, seg).CombinedOutput(); err != nil {
			t.Fatalf("openssl dgst: %v\n%s", err, out)
		}
		out, err := exec.Command(openssl, "pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin", "-in", digest, "-sigfile", sig).CombinedOutput()
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

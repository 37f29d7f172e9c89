package lineage

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrKey is returned (wrapped) for a key that cannot be parsed or does not
// match the one already published.
var ErrKey = errors.New("lineage: bad signing key")

// LoadOrCreateKey reads the PEM (PKCS#8) ed25519 private key at path, or
// creates one there (mode 0600, folders 0700) when the file does not exist.
// Two processes racing to create it end up with the same key: the loser
// reads the winner's file.
func LoadOrCreateKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		return ParsePrivateKey(data)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("lineage: read key: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("lineage: generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("lineage: encode key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("lineage: key folder: %w", err)
	}
	// Write a temporary file and link it into place: the key appears whole
	// or not at all, and Link fails if another process got there first.
	f, err := os.CreateTemp(filepath.Dir(path), ".sluice-key-*")
	if err != nil {
		return nil, fmt.Errorf("lineage: create key: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	werr := f.Chmod(0o600)
	if werr == nil {
		werr = pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return nil, fmt.Errorf("lineage: write key: %w", werr)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return LoadOrCreateKey(path)
		}
		return nil, fmt.Errorf("lineage: create key: %w", err)
	}
	return priv, nil
}

// ParsePrivateKey parses a PEM "PRIVATE KEY" (PKCS#8) holding an ed25519
// key.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%w: want a PEM PRIVATE KEY block", ErrKey)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: %T is not ed25519", ErrKey, k)
	}
	return priv, nil
}

// ParsePublicKey parses a PEM "PUBLIC KEY" (PKIX) block holding an ed25519
// key, or the raw 32 key bytes.
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		if len(data) == ed25519.PublicKeySize {
			return ed25519.PublicKey(append([]byte(nil), data...)), nil
		}
		return nil, fmt.Errorf("%w: want a PEM PUBLIC KEY block or %d raw bytes", ErrKey, ed25519.PublicKeySize)
	}
	if b.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%w: PEM block %q, want PUBLIC KEY", ErrKey, b.Type)
	}
	k, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: %T is not ed25519", ErrKey, k)
	}
	return pub, nil
}

// MarshalPublicKey encodes pub as a PEM "PUBLIC KEY" block, the form
// PublishKey writes and ParsePublicKey reads.
func MarshalPublicKey(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

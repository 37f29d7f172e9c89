package ingest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSecurityValidate(t *testing.T) {
	tests := []struct {
		name string
		sec  Security
		want string // substring of the error; empty means valid
	}{
		{"zero value is plaintext", Security{}, ""},
		{"tls with CA and client cert", Security{TLS: TLS{Enabled: true, CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem", ServerName: "kafka"}}, ""},
		{"scram with password file", Security{SASL: SASL{Mechanism: SASLScramSHA512, Username: "u", PasswordFile: "/run/secrets/p"}}, ""},
		{"plain with env", Security{SASL: SASL{Mechanism: SASLPlain, Username: "u", PasswordEnv: "KAFKA_PASSWORD"}}, ""},
		{"cert without key", Security{TLS: TLS{Enabled: true, CertFile: "c.pem"}}, "tls.cert_file is set without tls.key_file"},
		{"key without cert", Security{TLS: TLS{Enabled: true, KeyFile: "k.pem"}}, "tls.key_file is set without tls.cert_file"},
		{"tls file without enabled", Security{TLS: TLS{CAFile: "ca.pem"}}, "tls.ca_file is set but tls.enabled is false"},
		{"skip verify with CA", Security{TLS: TLS{Enabled: true, InsecureSkipVerify: true, CAFile: "ca.pem"}}, "contradicts tls.ca_file"},
		{"unknown mechanism", Security{SASL: SASL{Mechanism: "GSSAPI", Username: "u", Password: "p"}}, `unknown sasl.mechanism "GSSAPI": want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512`},
		{"lower-case mechanism", Security{SASL: SASL{Mechanism: "scram-sha-256", Username: "u", Password: "p"}}, "mechanism names are upper case: SCRAM-SHA-256"},
		{"password missing", Security{SASL: SASL{Mechanism: SASLPlain, Username: "u"}}, "needs a password"},
		{"two passwords", Security{SASL: SASL{Mechanism: SASLPlain, Username: "u", Password: "p", PasswordEnv: "P"}}, "set only one of"},
		{"username missing", Security{SASL: SASL{Mechanism: SASLScramSHA256, Password: "p"}}, "sasl.username is empty"},
		{"credentials without mechanism", Security{SASL: SASL{Username: "u", Password: "p"}}, "sasl.mechanism is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.sec.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if !errors.Is(err, ErrSecurity) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want ErrSecurity saying %q", err, tt.want)
			}
		})
	}
}

func TestSASLSecret(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "password")
	if err := os.WriteFile(file, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SLUICE_TEST_KAFKA_PASSWORD", "from-env")
	t.Setenv("SLUICE_TEST_EMPTY", "")
	tests := []struct {
		name string
		sasl SASL
		want string
		err  string
	}{
		{"inline", SASL{Password: "p"}, "p", ""},
		{"file drops one trailing newline", SASL{PasswordFile: file}, "s3cret", ""},
		{"env", SASL{PasswordEnv: "SLUICE_TEST_KAFKA_PASSWORD"}, "from-env", ""},
		{"missing file", SASL{PasswordFile: filepath.Join(dir, "nope")}, "", "sasl.password_file"},
		{"empty file", SASL{PasswordFile: empty}, "", "is empty"},
		{"unset env", SASL{PasswordEnv: "SLUICE_TEST_UNSET_VARIABLE"}, "", "SLUICE_TEST_UNSET_VARIABLE is not set"},
		{"empty env", SASL{PasswordEnv: "SLUICE_TEST_EMPTY"}, "", "SLUICE_TEST_EMPTY is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.sasl.Secret()
			if tt.err != "" {
				if !errors.Is(err, ErrSecurity) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Secret = %q, %v; want an error saying %q", got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Secret = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestTLSConfigFileErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		tls  TLS
		want string
	}{
		{"missing CA", TLS{Enabled: true, CAFile: filepath.Join(dir, "missing.pem")}, "tls.ca_file"},
		{"CA without certificates", TLS{Enabled: true, CAFile: notPEM}, "holds no PEM certificate"},
		{"bad key pair", TLS{Enabled: true, CertFile: notPEM, KeyFile: notPEM}, "tls.cert_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.tls.Config()
			if c != nil || !errors.Is(err, ErrSecurity) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Config = %v, %v; want an error saying %q", c, err, tt.want)
			}
		})
	}
	if c, err := (TLS{}).Config(); c != nil || err != nil {
		t.Errorf("disabled TLS: Config = %v, %v; want nil, nil", c, err)
	}
}

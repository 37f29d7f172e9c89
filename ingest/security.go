package ingest

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
)

// ErrSecurity is wrapped by every error about an invalid Security.
var ErrSecurity = errors.New("ingest: invalid security config")

// SASL mechanisms a Security may name.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// Security says how to connect to the brokers: TLS, SASL, both, or neither
// (the zero value: plaintext, no authentication). It is shared by the
// source, the dead-letter writer and any other client of the same cluster,
// and decoded from the spec's source.security block.
type Security struct {
	TLS  TLS  `yaml:"tls"`
	SASL SASL `yaml:"sasl"`
}

// TLS configures transport encryption and, with a client certificate,
// mutual TLS.
type TLS struct {
	// Enabled turns TLS on. Default false; every other field requires it.
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM bundle of the CAs that sign the brokers'
	// certificates. Default: the system's roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are the PEM client certificate and its private
	// key, for brokers that require mutual TLS. Both or neither. Default
	// none.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// InsecureSkipVerify accepts any broker certificate. Default false;
	// meant for tests only, and contradicts CAFile and ServerName.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// ServerName is the name the brokers' certificates must carry. Default:
	// the host part of each broker address.
	ServerName string `yaml:"server_name"`
}

// SASL configures authentication. The password comes from exactly one of
// Password, PasswordFile and PasswordEnv; prefer the last two, which keep
// the secret out of the spec.
type SASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512. Default empty:
	// no SASL, and every other field must be empty too.
	Mechanism string `yaml:"mechanism"`
	Username  string `yaml:"username"`
	// Password is the password itself.
	Password string `yaml:"password"`
	// PasswordFile is a file holding the password; one trailing newline is
	// ignored (Kubernetes secrets mounted as files often have one).
	PasswordFile string `yaml:"password_file"`
	// PasswordEnv names an environment variable holding the password.
	PasswordEnv string `yaml:"password_env"`
}

// Enabled reports whether SASL is configured.
func (s SASL) Enabled() bool { return s.Mechanism != "" }

// Validate reports contradictory or incomplete settings. It reads no file
// and no environment variable: those are checked when the connection is
// configured (TLS.Config, SASL.Secret), which may be on another machine.
func (s Security) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrSecurity}, args...)...))
	}
	t := s.TLS
	if !t.Enabled {
		for _, f := range []struct{ name, v string }{
			{"ca_file", t.CAFile}, {"cert_file", t.CertFile}, {"key_file", t.KeyFile}, {"server_name", t.ServerName},
		} {
			if f.v != "" {
				bad("tls.%s is set but tls.enabled is false", f.name)
			}
		}
		if t.InsecureSkipVerify {
			bad("tls.insecure_skip_verify is set but tls.enabled is false")
		}
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		bad("tls.cert_file is set without tls.key_file")
	case t.KeyFile != "" && t.CertFile == "":
		bad("tls.key_file is set without tls.cert_file")
	}
	if t.InsecureSkipVerify && t.CAFile != "" {
		bad("tls.insecure_skip_verify contradicts tls.ca_file: a CA is pointless when certificates are not verified")
	}
	if t.InsecureSkipVerify && t.ServerName != "" {
		bad("tls.insecure_skip_verify contradicts tls.server_name: the name is not checked when certificates are not verified")
	}

	a := s.SASL
	switch a.Mechanism {
	case "":
		if a.Username != "" || a.Password != "" || a.PasswordFile != "" || a.PasswordEnv != "" {
			bad("sasl credentials are set but sasl.mechanism is empty (want %s, %s or %s)",
				SASLPlain, SASLScramSHA256, SASLScramSHA512)
		}
		return errors.Join(errs...)
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
	default:
		hint := ""
		if up := strings.ToUpper(a.Mechanism); up == SASLPlain || up == SASLScramSHA256 || up == SASLScramSHA512 {
			hint = fmt.Sprintf(" (mechanism names are upper case: %s)", up)
		}
		bad("unknown sasl.mechanism %q: want %s, %s or %s%s", a.Mechanism, SASLPlain, SASLScramSHA256, SASLScramSHA512, hint)
	}
	if a.Username == "" {
		bad("sasl.username is empty")
	}
	n := 0
	for _, v := range []string{a.Password, a.PasswordFile, a.PasswordEnv} {
		if v != "" {
			n++
		}
	}
	switch {
	case n == 0:
		bad("sasl mechanism %s needs a password: set one of sasl.password, sasl.password_file, sasl.password_env", a.Mechanism)
	case n > 1:
		bad("set only one of sasl.password, sasl.password_file and sasl.password_env")
	}
	return errors.Join(errs...)
}

// Config builds the TLS client configuration: nil, nil when TLS is off.
// It reads the CA and the client key pair, so errors name the file.
func (t TLS) Config() (*tls.Config, error) {
	if !t.Enabled {
		return nil, nil
	}
	c := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // opt-in, documented as tests only
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: tls.ca_file: %w", ErrSecurity, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: tls.ca_file %s holds no PEM certificate", ErrSecurity, t.CAFile)
		}
		c.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: tls.cert_file %s / tls.key_file %s: %w", ErrSecurity, t.CertFile, t.KeyFile, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// Secret returns the password from wherever the SASL block says it is. An
// unset or empty environment variable and an empty file are errors, so a
// missing secret fails at start instead of as an authentication failure.
func (s SASL) Secret() (string, error) {
	switch {
	case s.Password != "":
		return s.Password, nil
	case s.PasswordFile != "":
		b, err := os.ReadFile(s.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("%w: sasl.password_file: %w", ErrSecurity, err)
		}
		p := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if p == "" {
			return "", fmt.Errorf("%w: sasl.password_file %s is empty", ErrSecurity, s.PasswordFile)
		}
		return p, nil
	case s.PasswordEnv != "":
		p, ok := os.LookupEnv(s.PasswordEnv)
		if !ok {
			return "", fmt.Errorf("%w: sasl.password_env: environment variable %s is not set", ErrSecurity, s.PasswordEnv)
		}
		if p == "" {
			return "", fmt.Errorf("%w: sasl.password_env: environment variable %s is empty", ErrSecurity, s.PasswordEnv)
		}
		return p, nil
	}
	return "", fmt.Errorf("%w: no sasl password configured", ErrSecurity)
}

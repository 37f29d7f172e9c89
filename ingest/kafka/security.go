package kafka

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"

	"github.com/sluice-dev/sluice/ingest"
)

// dialTimeout bounds connecting, the TLS handshake and SASL together, so a
// broker that never answers is an error, not a hang.
const dialTimeout = 10 * time.Second

// Dialer returns a kafka-go Dialer for sec, to put in Config.Dialer. It
// validates sec, reads the TLS files and resolves the SASL password now, so
// a misconfiguration fails here with an error naming the setting, not at
// the first connection.
func Dialer(sec ingest.Security) (*kafka.Dialer, error) {
	tlsc, mech, err := resolve(sec)
	if err != nil {
		return nil, err
	}
	return &kafka.Dialer{
		Timeout:       dialTimeout,
		DualStack:     true,
		TLS:           tlsc,
		SASLMechanism: mech,
	}, nil
}

// Transport returns a kafka-go Transport for sec, for kafka.Writer and
// kafka.Client; see Dialer.
func Transport(sec ingest.Security) (*kafka.Transport, error) {
	tlsc, mech, err := resolve(sec)
	if err != nil {
		return nil, err
	}
	return &kafka.Transport{DialTimeout: dialTimeout, TLS: tlsc, SASL: mech}, nil
}

// transportOf is a Transport that connects like d.
func transportOf(d *kafka.Dialer) *kafka.Transport {
	return &kafka.Transport{
		Dial:        d.DialFunc,
		DialTimeout: cmp(d.Timeout, dialTimeout),
		ClientID:    d.ClientID,
		TLS:         d.TLS,
		SASL:        d.SASLMechanism,
	}
}

func cmp(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func resolve(sec ingest.Security) (tlsc *tls.Config, mech sasl.Mechanism, err error) {
	if err := sec.Validate(); err != nil {
		return nil, nil, err
	}
	if tlsc, err = sec.TLS.Config(); err != nil {
		return nil, nil, err
	}
	if !sec.SASL.Enabled() {
		return tlsc, nil, nil
	}
	pass, err := sec.SASL.Secret()
	if err != nil {
		return nil, nil, err
	}
	user := sec.SASL.Username
	switch sec.SASL.Mechanism {
	case ingest.SASLPlain:
		mech = plain.Mechanism{Username: user, Password: pass}
	case ingest.SASLScramSHA256:
		mech = &scram{name: ingest.SASLScramSHA256, hash: sha256.New, user: user, pass: pass}
	case ingest.SASLScramSHA512:
		mech = &scram{name: ingest.SASLScramSHA512, hash: sha512.New, user: user, pass: pass}
	}
	return tlsc, mech, nil
}

// scram is the client side of SCRAM (RFC 5802, RFC 7677) as a kafka-go SASL
// mechanism. kafka-go's own sasl/scram needs a module (xdg-go/scram) this
// module does not require; this one uses the standard library only. Like
// Kafka's Java client it sends the username escaped but applies no SASLprep
// to the password: non-ASCII passwords must be stored by the broker in the
// same (NFC UTF-8) form.
type scram struct {
	name       string
	hash       func() hash.Hash
	user, pass string
	nonce      string // fixed client nonce, for tests; random when empty
}

// maxScramIterations bounds the PBKDF2 work a broker can ask of us; Kafka
// itself accepts at most 16384.
const maxScramIterations = 1 << 20

func (m *scram) Name() string { return m.name }

func (m *scram) Start(context.Context) (sasl.StateMachine, []byte, error) {
	nonce := m.nonce
	if nonce == "" {
		var b [24]byte
		_, _ = rand.Read(b[:]) // never fails (crypto/rand)
		nonce = base64.RawStdEncoding.EncodeToString(b[:])
	}
	user := strings.NewReplacer("=", "=3D", ",", "=2C").Replace(m.user)
	bare := "n=" + user + ",r=" + nonce
	return &scramSession{m: m, nonce: nonce, clientFirstBare: bare}, []byte("n,," + bare), nil
}

type scramSession struct {
	m               *scram
	nonce           string
	clientFirstBare string
	serverSignature []byte // set once the client proof is sent
}

func (s *scramSession) Next(_ context.Context, challenge []byte) (bool, []byte, error) {
	msg := string(challenge)
	attrs := map[byte]string{}
	for _, kv := range strings.Split(msg, ",") {
		if len(kv) >= 2 && kv[1] == '=' {
			attrs[kv[0]] = kv[2:]
		}
	}
	if e, ok := attrs['e']; ok {
		return false, nil, fmt.Errorf("%s: server rejected the authentication: %s", s.m.name, e)
	}
	if s.serverSignature != nil {
		v, err := base64.StdEncoding.DecodeString(attrs['v'])
		if err != nil || !hmac.Equal(v, s.serverSignature) {
			return false, nil, fmt.Errorf("%s: the server's signature does not match: it does not know the password", s.m.name)
		}
		return true, nil, nil
	}
	nonce, salt64, iters := attrs['r'], attrs['s'], attrs['i']
	if !strings.HasPrefix(nonce, s.nonce) || len(nonce) == len(s.nonce) {
		return false, nil, fmt.Errorf("%s: server nonce does not extend the client nonce", s.m.name)
	}
	salt, err := base64.StdEncoding.DecodeString(salt64)
	if err != nil || len(salt) == 0 {
		return false, nil, fmt.Errorf("%s: bad salt %q from server", s.m.name, salt64)
	}
	n, err := strconv.Atoi(iters)
	if err != nil || n < 1 || n > maxScramIterations {
		return false, nil, fmt.Errorf("%s: bad iteration count %q from server", s.m.name, iters)
	}
	h := s.m.hash
	salted, err := pbkdf2.Key(h, s.m.pass, salt, n, h().Size())
	if err != nil {
		return false, nil, fmt.Errorf("%s: %w", s.m.name, err)
	}
	clientKey := mac(h, salted, "Client Key")
	stored := h()
	stored.Write(clientKey)
	final := "c=biws,r=" + nonce
	auth := s.clientFirstBare + "," + msg + "," + final
	proof := mac(h, stored.Sum(nil), auth)
	for i := range proof {
		proof[i] ^= clientKey[i]
	}
	s.serverSignature = mac(h, mac(h, salted, "Server Key"), auth)
	return false, []byte(final + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

func mac(h func() hash.Hash, key []byte, msg string) []byte {
	m := hmac.New(h, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// explain adds a hint to the errors that do not name their cause: a broker
// that expects TLS or SASL hangs up on a client that does not speak it.
func explain(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w (the broker closed the connection: check that the security settings match its listener: TLS on or off, SASL mechanism and credentials)", err)
	}
	return err
}

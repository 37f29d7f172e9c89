package flight

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/sluice-dev/sluice/gpuexec"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// ClientOptions configure a Client.
type ClientOptions struct {
	// ID is the executor's id as the router and the policy know it; it
	// must equal the server's --id (Healthy checks).
	ID string
	// Location is where the remote executor runs, as policy reads it; its
	// Kind and Jurisdiction must equal the server's (Healthy checks).
	Location gpuexec.Location
	// Token is the bearer token sent with every call. Default (""): none.
	Token string
	// TLS, when set, makes the client speak TLS. Default (nil): plaintext.
	TLS *tls.Config
	// Timeout bounds one Execute. Default (<= 0): 5 minutes. Healthy is
	// bounded by the smaller of this and 5s.
	Timeout time.Duration
	// MaxMessageBytes must match the server's. Default (<= 0):
	// DefaultMaxMessageBytes.
	MaxMessageBytes int
	// Allocator allocates the result batch. Default (nil):
	// memory.DefaultAllocator.
	Allocator memory.Allocator
}

// Client is a gpuexec.Executor that runs plans on a remote executor over
// Arrow Flight. It is safe for concurrent use; the connection is made
// lazily and re-made after a failure.
type Client struct {
	addr string
	opts ClientOptions
	conn *grpc.ClientConn
	fc   flight.FlightServiceClient
}

var _ gpuexec.Executor = (*Client)(nil)

// NewClient returns a client for the executor serving at addr
// ("host:port"). It does not connect; Healthy or Execute will.
func NewClient(addr string, opts ClientOptions) (*Client, error) {
	if opts.ID == "" {
		return nil, errors.New("flight: client: ID is empty")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Minute
	}
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if opts.Allocator == nil {
		opts.Allocator = memory.DefaultAllocator
	}
	creds := insecure.NewCredentials()
	if opts.TLS != nil {
		creds = credentials.NewTLS(opts.TLS)
	}
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(opts.MaxMessageBytes),
			grpc.MaxCallSendMsgSize(opts.MaxMessageBytes)))
	if err != nil {
		return nil, fmt.Errorf("flight: client for %s at %s: %w", opts.ID, addr, err)
	}
	return &Client{addr: addr, opts: opts, conn: conn, fc: flight.NewFlightServiceClient(conn)}, nil
}

// ID returns the executor's id.
func (c *Client) ID() string { return c.opts.ID }

// Kind returns "remote".
func (c *Client) Kind() string { return "remote" }

// Location returns where the remote executor runs.
func (c *Client) Location() gpuexec.Location { return c.opts.Location }

// Addr returns the server's address.
func (c *Client) Addr() string { return c.addr }

// Close closes the connection; calls after it fail.
func (c *Client) Close() error { return c.conn.Close() }

// Healthy asks the server's "healthz" action. It returns an error wrapping
// gpuexec.ErrUnavailable when the server cannot be reached or its
// executor cannot take work, and an error (not retryable) when the server
// is another executor than configured: another id, location kind or
// jurisdiction, which would make policy decide on the wrong facts.
func (c *Client) Healthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, min(c.opts.Timeout, 5*time.Second))
	defer cancel()
	stream, err := c.fc.DoAction(withToken(ctx, c.opts.Token), &flight.Action{Type: actionHealthz})
	if err != nil {
		return errorOf(ctx, c.opts.ID, err)
	}
	res, err := stream.Recv()
	if err != nil {
		return errorOf(ctx, c.opts.ID, err)
	}
	for {
		if _, err := stream.Recv(); err != nil {
			break
		}
	}
	var id identity
	if err := json.Unmarshal(res.GetBody(), &id); err != nil {
		return fmt.Errorf("flight: executor %s at %s: unreadable healthz answer: %v", c.opts.ID, c.addr, err)
	}
	want := c.opts.Location
	if id.ID != c.opts.ID || id.Location.Kind != want.Kind || id.Location.Jurisdiction != want.Jurisdiction {
		return fmt.Errorf("flight: %s is executor %q (%s, %s), configured as %q (%s, %s)",
			c.addr, id.ID, id.Location.Kind, id.Location.Jurisdiction, c.opts.ID, want.Kind, want.Jurisdiction)
	}
	return nil
}

// Execute sends rec (only the columns plan reads, sliced under the
// message limit) and plan to the server with the routing decision in ctx
// (gpuexec.WithDecision; without one the server refuses) and returns the
// result as one batch. It does not release rec; the caller releases the
// result. Errors wrap gpuexec.ErrUnavailable (server lost, overloaded or
// timed out: retry elsewhere), ErrRefused, ErrUnauthenticated or
// gpuexec.ErrInvalidPlan; a cancelled ctx yields ctx's error.
func (c *Client) Execute(ctx context.Context, plan *gpuexec.Plan, rec arrow.RecordBatch) (arrow.RecordBatch, error) {
	if rec == nil {
		return nil, fmt.Errorf("flight: executor %s: record is nil", c.opts.ID)
	}
	header, err := json.Marshal(request{Version: protocolVersion, Plan: plan})
	if err != nil {
		return nil, fmt.Errorf("flight: executor %s: encode plan: %w", c.opts.ID, err)
	}
	var meta []byte
	if d, ok := gpuexec.DecisionFrom(ctx); ok {
		if meta, err = json.Marshal(d); err != nil {
			return nil, fmt.Errorf("flight: executor %s: encode decision: %w", c.opts.ID, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	stream, err := c.fc.DoExchange(withToken(ctx, c.opts.Token))
	if err != nil {
		return nil, errorOf(ctx, c.opts.ID, err)
	}

	in := project(rec, plan)
	defer in.Release()
	sent := make(chan error, 1)
	go func() {
		sent <- c.send(stream, header, meta, in)
	}()

	chunks, rerr := c.receive(stream)
	serr := <-sent
	defer func() {
		for _, ch := range chunks {
			ch.Release()
		}
	}()
	switch {
	case rerr != nil:
		return nil, errorOf(ctx, c.opts.ID, rerr)
	case serr != nil && !errors.Is(serr, io.EOF):
		return nil, errorOf(ctx, c.opts.ID, serr)
	case len(chunks) == 0:
		return nil, fmt.Errorf("flight: executor %s: no result", c.opts.ID)
	}
	return concat(chunks, c.opts.Allocator)
}

// send writes the request, then the batch in slices, then closes its side.
// io.EOF means the server ended the exchange early; its status comes from
// receive.
func (c *Client) send(stream flight.FlightService_DoExchangeClient, header, meta []byte, rec arrow.RecordBatch) error {
	err := stream.Send(&flight.FlightData{
		FlightDescriptor: &flight.FlightDescriptor{Type: flight.DescriptorCMD, Cmd: header},
		AppMetadata:      meta,
	})
	if err != nil {
		return err
	}
	w := flight.NewRecordWriter(stream, ipc.WithSchema(rec.Schema()), ipc.WithAllocator(c.opts.Allocator))
	if err := sliceBatch(rec, int64(c.opts.MaxMessageBytes/4), w.Write); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return stream.CloseSend()
}

// receive reads the result slices, retained; the caller releases them.
func (c *Client) receive(stream flight.FlightService_DoExchangeClient) ([]arrow.RecordBatch, error) {
	rdr, err := flight.NewRecordReader(stream, ipc.WithAllocator(c.opts.Allocator))
	if err != nil {
		return nil, err
	}
	defer rdr.Release()
	var out []arrow.RecordBatch
	for rdr.Next() {
		rec := rdr.RecordBatch()
		rec.Retain()
		out = append(out, rec)
	}
	if err := rdr.Err(); err != nil && !errors.Is(err, io.EOF) {
		return out, err
	}
	return out, nil
}

// concat joins result slices into one batch.
func concat(chunks []arrow.RecordBatch, mem memory.Allocator) (arrow.RecordBatch, error) {
	if len(chunks) == 1 {
		chunks[0].Retain()
		return chunks[0], nil
	}
	schema := chunks[0].Schema()
	cols := make([]arrow.Array, schema.NumFields())
	defer func() {
		for _, a := range cols {
			if a != nil {
				a.Release()
			}
		}
	}()
	var rows int64
	for _, ch := range chunks {
		rows += ch.NumRows()
	}
	parts := make([]arrow.Array, len(chunks))
	for i := range cols {
		for j, ch := range chunks {
			parts[j] = ch.Column(i)
		}
		a, err := array.Concatenate(parts, mem)
		if err != nil {
			return nil, fmt.Errorf("flight: join result column %s: %w", schema.Field(i).Name, err)
		}
		cols[i] = a
	}
	return array.NewRecordBatch(schema, cols, rows), nil
}

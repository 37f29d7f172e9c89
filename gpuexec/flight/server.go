package flight

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/sluice-dev/sluice/gpuexec"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// ServerOptions configure a Server.
type ServerOptions struct {
	// Token is the bearer token every call must carry. Default (""): no
	// token is required, which is only safe on loopback or behind a
	// network policy.
	Token string
	// TLS, when set, makes the server speak TLS only. Default (nil):
	// plaintext.
	TLS *tls.Config
	// MaxMessageBytes is the largest gRPC message accepted and the size
	// results are sliced to a quarter of. Default (<= 0):
	// DefaultMaxMessageBytes (64 MiB). Clients must use the same.
	MaxMessageBytes int
	// Timeout bounds one exchange (one batch). Default (<= 0): 5 minutes.
	Timeout time.Duration
	// AllowedDecision says whether a batch's routing decision lets this
	// server's executor (id, at loc) run it; a non-nil error refuses the
	// batch with PermissionDenied and that message. Default (nil): the
	// decision must list id among Allowed.
	AllowedDecision func(d gpuexec.RouteDecision, id string, loc gpuexec.Location) error
	// Allocator allocates the batches read from the wire. Default (nil):
	// memory.DefaultAllocator.
	Allocator memory.Allocator
	// Logger gets one line per refused batch and per failed exchange, and a
	// debug line per batch. Default (nil): slog.Default().
	Logger *slog.Logger
	// InjectErrorRate is the share, from 0 to 1, of exchanges the server
	// fails on purpose, for chaos and resilience tests of the pipelines
	// that use it: such an exchange gets codes.Internal, with a message
	// saying it was injected, after its routing decision is checked and
	// before its batch is read, and a warn line is logged. Health probes
	// are unaffected, so the executor looks healthy but flaky. Default
	// (0): none. NewServer rejects a rate outside [0, 1].
	InjectErrorRate float64
	// InjectSeed seeds the choice of the exchanges to fail, so that a
	// test can repeat a run's sequence of failures. Default (0): a random
	// seed.
	InjectSeed uint64
}

// Server serves one executor over Arrow Flight. Start it with Serve, stop
// it with Shutdown.
type Server struct {
	exec gpuexec.Executor
	opts ServerOptions
	g    *grpc.Server

	injectMu sync.Mutex
	inject   *rand.Rand // nil when InjectErrorRate is 0
}

// NewServer returns a server for exec. It rejects a nil executor and an
// InjectErrorRate outside [0, 1].
func NewServer(exec gpuexec.Executor, opts ServerOptions) (*Server, error) {
	if exec == nil {
		return nil, errors.New("flight: server: executor is nil")
	}
	if !(opts.InjectErrorRate >= 0 && opts.InjectErrorRate <= 1) {
		return nil, fmt.Errorf("flight: server: InjectErrorRate is %v; want 0 to 1", opts.InjectErrorRate)
	}
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Minute
	}
	if opts.AllowedDecision == nil {
		opts.AllowedDecision = AllowListed
	}
	if opts.Allocator == nil {
		opts.Allocator = memory.DefaultAllocator
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{exec: exec, opts: opts}
	if opts.InjectErrorRate > 0 {
		seed := opts.InjectSeed
		if seed == 0 {
			seed = rand.Uint64()
		}
		s.inject = rand.New(rand.NewPCG(seed, seed))
	}
	gopts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(opts.MaxMessageBytes),
		grpc.MaxSendMsgSize(opts.MaxMessageBytes),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := checkToken(ctx, opts.Token); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := checkToken(ss.Context(), opts.Token); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	}
	if opts.TLS != nil {
		gopts = append(gopts, grpc.Creds(credentials.NewTLS(opts.TLS)))
	}
	s.g = grpc.NewServer(gopts...)
	flight.RegisterFlightServiceServer(s.g, &service{s: s})
	return s, nil
}

// AllowListed is the default ServerOptions.AllowedDecision: d must list
// id among Allowed.
func AllowListed(d gpuexec.RouteDecision, id string, _ gpuexec.Location) error {
	if slices.Contains(d.Allowed, id) {
		return nil
	}
	return fmt.Errorf("decision %v (policy revision %q) allows %v, not executor %q", d.IDs, d.Revision, d.Allowed, id)
}

// Serve accepts connections on lis until Shutdown; it returns nil after a
// Shutdown.
func (s *Server) Serve(lis net.Listener) error {
	err := s.g.Serve(lis)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// Shutdown stops accepting calls and waits for running exchanges to end,
// or for ctx to end, after which it cuts them off.
func (s *Server) Shutdown(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		s.g.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.g.Stop()
		<-done
	}
}

type service struct {
	flight.BaseFlightServer
	s *Server
}

func (svc *service) ListActions(_ *flight.Empty, stream flight.FlightService_ListActionsServer) error {
	return stream.Send(&flight.ActionType{Type: actionHealthz, Description: "the executor's id and location, when it can take work"})
}

func (svc *service) DoAction(a *flight.Action, stream flight.FlightService_DoActionServer) error {
	if a.GetType() != actionHealthz {
		return status.Errorf(codes.Unimplemented, "unknown action %q", a.GetType())
	}
	e := svc.s.exec
	if err := e.Healthy(stream.Context()); err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	body, err := json.Marshal(identity{ID: e.ID(), Kind: e.Kind(), Location: e.Location()})
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	return stream.Send(&flight.Result{Body: body})
}

func (svc *service) DoExchange(stream flight.FlightService_DoExchangeServer) error {
	s := svc.s
	ctx, cancel := context.WithTimeout(stream.Context(), s.opts.Timeout)
	defer cancel()
	log := s.opts.Logger.With("executor", s.exec.ID(), "peer", peerOf(stream))

	first, err := stream.Recv()
	if err != nil {
		return err
	}
	desc := first.GetFlightDescriptor()
	if desc == nil || desc.GetType() != flight.DescriptorCMD {
		return status.Error(codes.InvalidArgument, "sluice executor: the first message must carry a CMD descriptor with the request")
	}
	var req request
	if err := json.Unmarshal(desc.GetCmd(), &req); err != nil {
		return status.Errorf(codes.InvalidArgument, "sluice executor: request: %v", err)
	}
	if req.Version != protocolVersion {
		return status.Errorf(codes.InvalidArgument, "sluice executor: request version %d, this server speaks %d", req.Version, protocolVersion)
	}
	if len(first.GetAppMetadata()) == 0 {
		log.Warn("flight: refused a batch without a routing decision")
		return status.Error(codes.PermissionDenied, "sluice executor: the batch carries no routing decision")
	}
	var d gpuexec.RouteDecision
	if err := json.Unmarshal(first.GetAppMetadata(), &d); err != nil {
		return status.Errorf(codes.PermissionDenied, "sluice executor: unreadable routing decision: %v", err)
	}
	if err := s.opts.AllowedDecision(d, s.exec.ID(), s.exec.Location()); err != nil {
		log.Warn("flight: refused a batch", "decision_ids", d.IDs, "revision", d.Revision, "allowed", d.Allowed, "err", err)
		return status.Errorf(codes.PermissionDenied, "sluice executor %s: %v", s.exec.ID(), err)
	}
	if s.injectError() {
		log.Warn("flight: failing a batch on purpose (error injection for resilience tests)",
			"decision_ids", d.IDs, "inject_error_rate", s.opts.InjectErrorRate)
		return status.Errorf(codes.Internal, "sluice executor %s: error injected on purpose (inject error rate %g), a resilience test, not a bug",
			s.exec.ID(), s.opts.InjectErrorRate)
	}

	rdr, err := flight.NewRecordReader(stream, ipc.WithAllocator(s.opts.Allocator))
	if err != nil {
		if errors.Is(err, io.EOF) {
			return status.Error(codes.InvalidArgument, "sluice executor: no batch after the request")
		}
		return status.Errorf(codes.InvalidArgument, "sluice executor: read batch: %v", err)
	}
	defer rdr.Release()

	ectx := gpuexec.WithDecision(ctx, d)
	limit := int64(s.opts.MaxMessageBytes / 4)
	var w *flight.Writer
	rows := int64(0)
	start := time.Now()
	for rdr.Next() {
		in := rdr.RecordBatch()
		out, err := s.exec.Execute(ectx, req.Plan, in)
		if err != nil {
			log.Warn("flight: execute failed", "decision_ids", d.IDs, "err", err)
			return statusOf(err)
		}
		if w == nil {
			w = flight.NewRecordWriter(stream, ipc.WithSchema(out.Schema()), ipc.WithAllocator(s.opts.Allocator))
		}
		err = sliceBatch(out, limit, w.Write)
		rows += out.NumRows()
		out.Release()
		if err != nil {
			return err
		}
	}
	if err := rdr.Err(); err != nil {
		return status.Errorf(codes.InvalidArgument, "sluice executor: read batch: %v", err)
	}
	if w == nil {
		return status.Error(codes.InvalidArgument, "sluice executor: the stream held a schema but no batch")
	}
	if err := w.Close(); err != nil {
		return err
	}
	log.Debug("flight: executed", "decision_ids", d.IDs, "rows", rows, "duration", time.Since(start))
	return nil
}

// injectError says whether to fail the exchange at hand on purpose, with
// probability InjectErrorRate.
func (s *Server) injectError() bool {
	if s.inject == nil {
		return false
	}
	s.injectMu.Lock()
	defer s.injectMu.Unlock()
	return s.inject.Float64() < s.opts.InjectErrorRate
}

func peerOf(stream grpc.ServerStream) string {
	if p, ok := peer.FromContext(stream.Context()); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

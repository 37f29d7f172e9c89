package flight

import (
	"context"
	"crypto/subtle"
	"errors"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/sluice-dev/sluice/gpuexec"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// protocolVersion is the version of the request header; a server refuses
// another.
const protocolVersion = 1

// DefaultMaxMessageBytes is the largest gRPC message either side accepts
// unless told otherwise. Batches are sliced to a quarter of the limit, so
// a result with more columns than its input still fits.
const DefaultMaxMessageBytes = 64 << 20

// actionHealthz is the custom action behind Client.Healthy.
const actionHealthz = "healthz"

var (
	// ErrRefused means the server refused the batch: its routing decision
	// is missing or does not allow the server's executor. Retrying does
	// not help; the caller's routing and the server's identity disagree.
	ErrRefused = errors.New("flight: batch refused by the executor")
	// ErrUnauthenticated means the server did not accept the token.
	ErrUnauthenticated = errors.New("flight: not authenticated")
)

// request is the JSON in the first message's FlightDescriptor.
type request struct {
	Version int           `json:"version"`
	Plan    *gpuexec.Plan `json:"plan"`
}

// identity is the healthz answer.
type identity struct {
	ID       string           `json:"id"`
	Kind     string           `json:"kind"`
	Location gpuexec.Location `json:"location"`
}

const bearerPrefix = "Bearer "

func withToken(ctx context.Context, token string) context.Context {
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", bearerPrefix+token)
}

// checkToken compares the bearer token in ctx's metadata with want in
// constant time.
func checkToken(ctx context.Context, want string) error {
	if want == "" {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if got, ok := strings.CutPrefix(v, bearerPrefix); ok && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1 {
			return nil
		}
	}
	return status.Error(codes.Unauthenticated, "sluice executor: missing or wrong bearer token")
}

// statusOf maps an executor error to the gRPC status the client maps back.
func statusOf(err error) error {
	switch {
	case errors.Is(err, gpuexec.ErrInvalidPlan):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, gpuexec.ErrUnavailable):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// errorOf maps a gRPC error from the server (or the connection) to the
// sentinels callers match: a lost or overloaded executor is
// gpuexec.ErrUnavailable, so the router retries elsewhere.
func errorOf(ctx context.Context, id string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	st, _ := status.FromError(err)
	msg := st.Message()
	switch st.Code() {
	case codes.PermissionDenied:
		return &remoteError{id: id, msg: msg, kind: ErrRefused}
	case codes.Unauthenticated:
		return &remoteError{id: id, msg: msg, kind: ErrUnauthenticated}
	case codes.InvalidArgument:
		return &remoteError{id: id, msg: msg, kind: gpuexec.ErrInvalidPlan}
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Aborted:
		return &remoteError{id: id, msg: msg, kind: gpuexec.ErrUnavailable}
	}
	return &remoteError{id: id, msg: st.Code().String() + ": " + msg}
}

// remoteError is an error from a remote executor, matching its sentinel
// with errors.Is.
type remoteError struct {
	id, msg string
	kind    error
}

func (e *remoteError) Error() string {
	if e.kind != nil {
		return "flight: executor " + e.id + ": " + e.msg + " (" + e.kind.Error() + ")"
	}
	return "flight: executor " + e.id + ": " + e.msg
}

func (e *remoteError) Unwrap() error { return e.kind }

// recordBytes is the size of rec's buffers.
func recordBytes(rec arrow.RecordBatch) int64 {
	var n int64
	for _, c := range rec.Columns() {
		n += dataBytes(c.Data())
	}
	return n
}

func dataBytes(d arrow.ArrayData) int64 {
	var n int64
	for _, b := range d.Buffers() {
		if b != nil {
			n += int64(b.Len())
		}
	}
	for _, c := range d.Children() {
		n += dataBytes(c)
	}
	return n
}

// sliceBatch calls fn with consecutive slices of rec of at most limit bytes
// each (by an even split of its rows; at least one row per slice), or rec
// itself when it fits. An empty batch is passed on as is.
func sliceBatch(rec arrow.RecordBatch, limit int64, fn func(arrow.RecordBatch) error) error {
	n := rec.NumRows()
	size := recordBytes(rec)
	if n == 0 || size <= limit {
		return fn(rec)
	}
	per := max(1, n*limit/size)
	for lo := int64(0); lo < n; lo += per {
		s := rec.NewSlice(lo, min(lo+per, n))
		err := fn(s)
		s.Release()
		if err != nil {
			return err
		}
	}
	return nil
}

// project returns rec with only the columns plan reads, retained, or rec
// retained when a name is missing or repeated (the server then reports the
// plan error against the whole batch).
func project(rec arrow.RecordBatch, plan *gpuexec.Plan) arrow.RecordBatch {
	if plan == nil {
		rec.Retain()
		return rec
	}
	need := map[string]bool{}
	for _, n := range plan.Passthrough {
		need[n] = true
	}
	for _, s := range plan.Steps {
		need[s.Input] = true
	}
	schema := rec.Schema()
	var idx []int
	for name := range need {
		i := schema.FieldIndices(name)
		if len(i) != 1 {
			rec.Retain()
			return rec
		}
		idx = append(idx, i[0])
	}
	if len(idx) == int(rec.NumCols()) {
		rec.Retain()
		return rec
	}
	// Keep the batch's column order.
	keep := make([]bool, rec.NumCols())
	for _, i := range idx {
		keep[i] = true
	}
	var fields []arrow.Field
	var cols []arrow.Array
	for i, k := range keep {
		if k {
			fields = append(fields, schema.Field(i))
			cols = append(cols, rec.Column(i))
		}
	}
	md := schema.Metadata()
	return array.NewRecordBatch(arrow.NewSchema(fields, &md), cols, rec.NumRows())
}

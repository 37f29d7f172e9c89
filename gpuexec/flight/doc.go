// Package flight runs a gpuexec.Executor behind an Arrow Flight endpoint
// (Server) and calls one from afar (Client, itself a gpuexec.Executor), so
// the router can send a batch to an executor in another process, machine
// or cloud region.
//
// One Execute is one Flight DoExchange:
//
//  1. the client sends a FlightData with no data whose FlightDescriptor
//     (type CMD) holds the request as JSON ({"version":1,"plan":{...}})
//     and whose app_metadata holds the batch's routing decision as JSON
//     (gpuexec.RouteDecision: {"decision_ids":[...],"allowed":[...],
//     "revision":"..."}), taken from the context (gpuexec.WithDecision);
//  2. the server checks the decision before it reads any data: one that is
//     missing or does not allow the server's executor ends the exchange
//     with gRPC PermissionDenied (ErrRefused on the client); a server
//     told to inject errors (ServerOptions.InjectErrorRate, for resilience
//     tests) then fails its share of exchanges with gRPC Internal;
//  3. the client streams the batch as Arrow IPC messages, sliced so no
//     message comes near the size limit, and only the columns the plan
//     reads;
//  4. the server runs the plan on each slice and streams the results back;
//     the client concatenates them into one batch.
//
// Every call carries "authorization: Bearer TOKEN" gRPC metadata when a
// token is set; TLS is optional (set it for anything beyond loopback). A
// custom action "healthz" answers with the executor's id and location, so
// the client's Healthy is a cheap round trip that also catches an address
// pointing at the wrong executor.
package flight

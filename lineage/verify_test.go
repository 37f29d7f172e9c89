package lineage

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func segKey(seq int) string {
	keys := map[int]string{
		0: "lineage/pipeline=card-fraud/chain=events-3/00000000000000000000.ndjson",
		3: "lineage/pipeline=card-fraud/chain=events-3/00000000000000000003.ndjson",
		6: "lineage/pipeline=card-fraud/chain=events-3/00000000000000000006.ndjson",
		9: "lineage/pipeline=card-fraud/chain=events-3/00000000000000000009.ndjson",
	}
	return keys[seq]
}

// sigLine returns a segment's signature line, with its newline.
func sigLine(segment []byte) []byte {
	return segment[len(withoutSignature(segment)):]
}

// relink rewrites a segment's events with consecutive seqs from seq and
// links them from prev, as a holder of the signing key could.
func relink(t *testing.T, evs []Event, seq uint64, prev string) []byte {
	t.Helper()
	var buf bytes.Buffer
	for i := range evs {
		evs[i].Run.Facets.Chain.Seq = seq + uint64(i)
		evs[i].Run.Facets.Chain.Prev = prev
		line, err := json.Marshal(evs[i])
		if err != nil {
			t.Fatal(err)
		}
		prev = hashLine(line)
		buf.Write(line)
		buf.WriteByte('\n')
	}
	return buf.Bytes()
}

func TestVerifyDetectsTampering(t *testing.T) {
	owner := testKey(1)
	attacker := testKey(66)
	cases := []struct {
		name   string
		tamper func(t *testing.T, s *memStore)
		// trusted: verify with the owner's key instead of the published one.
		trusted bool
		// want are substrings of one problem.
		want []string
	}{
		{
			name: "flipped byte",
			tamper: func(t *testing.T, s *memStore) {
				d := s.get(segKey(3))
				i := bytes.Index(d, []byte(`"rowCount":8`))
				d[i+len(`"rowCount":`)] = '9'
				s.set(segKey(3), d)
			},
			want: []string{"chain card-fraud/events-3", "segment " + segKey(3), "seq 3", "signature does not verify"},
		},
		{
			name: "flipped byte in a segment's last event",
			tamper: func(t *testing.T, s *memStore) {
				d := s.get(segKey(3))
				d[len(withoutSignature(d))-10] ^= 1
				s.set(segKey(3), d)
			},
			want: []string{"segment " + segKey(6), "seq 6", "prev hash does not match"},
		},
		{
			name: "removed segment",
			tamper: func(t *testing.T, s *memStore) {
				s.del(segKey(3))
			},
			want: []string{"segment " + segKey(6), "seq 6", "expected seq 3"},
		},
		{
			name: "removed first segment",
			tamper: func(t *testing.T, s *memStore) {
				s.del(segKey(0))
			},
			want: []string{"segment " + segKey(3), "seq 3", "expected seq 0", "first events are missing"},
		},
		{
			name: "earlier trail: removed segment, signature left",
			tamper: func(t *testing.T, s *memStore) {
				s.toLegacy(segKey(6), func(seg []byte) []byte { return legacySig(owner, seg) })
				s.del(segKey(6))
			},
			want: []string{"segment " + segKey(6), "seq 6", "signature without segment"},
		},
		{
			name: "removed event",
			tamper: func(t *testing.T, s *memStore) {
				lines := bytes.SplitAfter(s.get(segKey(3)), []byte("\n"))
				s.set(segKey(3), bytes.Join([][]byte{lines[0], lines[2]}, nil))
			},
			want: []string{"segment " + segKey(3), "seq 5", "expected seq 4"},
		},
		{
			name: "reordered segments",
			tamper: func(t *testing.T, s *memStore) {
				a, b := s.get(segKey(3)), s.get(segKey(6))
				s.set(segKey(3), b)
				s.set(segKey(6), a)
			},
			want: []string{"segment " + segKey(3), "seq 6", "key names seq 3"},
		},
		{
			name:   "missing signature",
			tamper: func(t *testing.T, s *memStore) { s.set(segKey(9), withoutSignature(s.get(segKey(9)))) },
			want:   []string{"segment " + segKey(9), "seq 9", "missing signature"},
		},
		{
			name: "another segment's signature",
			tamper: func(t *testing.T, s *memStore) {
				s.set(segKey(9), append(withoutSignature(s.get(segKey(9))), sigLine(s.get(segKey(6)))...))
			},
			want: []string{"segment " + segKey(9), "seq 9", "signature does not verify"},
		},
		{
			name: "signature line altered",
			tamper: func(t *testing.T, s *memStore) {
				s.set(segKey(9), bytes.Replace(s.get(segKey(9)), []byte(`"signature":"`), []byte(`"signature":"A`), 1))
			},
			want: []string{"segment " + segKey(9), "seq 9", "unreadable", "not a base64 ed25519 signature"},
		},
		{
			name: "earlier trail: missing signature object",
			tamper: func(t *testing.T, s *memStore) {
				s.toLegacy(segKey(9), func(seg []byte) []byte { return legacySig(owner, seg) })
				s.del(segKey(9) + sigExt)
			},
			want: []string{"segment " + segKey(9), "seq 9", "missing signature"},
		},
		{
			name: "earlier trail: another segment's signature object",
			tamper: func(t *testing.T, s *memStore) {
				for _, seq := range []int{6, 9} {
					s.toLegacy(segKey(seq), func(seg []byte) []byte { return legacySig(owner, seg) })
				}
				s.set(segKey(9)+sigExt, s.get(segKey(6)+sigExt))
			},
			want: []string{"segment " + segKey(9), "seq 9", "signature does not verify"},
		},
		{
			name: "truncated segment",
			tamper: func(t *testing.T, s *memStore) {
				d := s.get(segKey(6))
				s.set(segKey(6), d[:len(d)/2])
			},
			want: []string{"segment " + segKey(6), "seq 6", "unreadable"},
		},
		{
			name: "forged and re-signed with another key",
			tamper: func(t *testing.T, s *memStore) {
				evs, err := ReadSegment(s.get(segKey(9)))
				if err != nil {
					t.Fatal(err)
				}
				evs[0].Run.Facets.Executor.Location.Jurisdiction = "US"
				d := relink(t, evs, 9, evs[0].Run.Facets.Chain.Prev)
				s.set(segKey(9), signedWith(attacker, d))
			},
			trusted: true,
			want:    []string{"segment " + segKey(9), "seq 9", "signature does not verify"},
		},
		{
			name: "forged, re-signed and published key replaced",
			tamper: func(t *testing.T, s *memStore) {
				for _, seq := range []int{0, 3, 6, 9} {
					s.set(segKey(seq), signedWith(attacker, withoutSignature(s.get(segKey(seq)))))
				}
				pemBytes, _ := MarshalPublicKey(attacker.Public().(ed25519.PublicKey))
				s.set("lineage/pipeline=card-fraud/_keys/ed25519.pub", pemBytes)
			},
			trusted: true,
			want:    []string{"segment " + segKey(0), "seq 0", "signature does not verify"},
		},
		{
			// A holder of the signing key (or a buggy writer) drops a dead
			// letter and relinks: only the offset accounting notices.
			name: "dead letter dropped with the signing key",
			tamper: func(t *testing.T, s *memStore) {
				evs, err := ReadSegment(s.get(segKey(9)))
				if err != nil {
					t.Fatal(err)
				}
				d := relink(t, []Event{evs[0], evs[2]}, 9, evs[0].Run.Facets.Chain.Prev)
				s.set(segKey(9), signedWith(owner, d))
			},
			want: []string{"segment " + segKey(9), "offsets 131..131 are not accounted for"},
		},
		{
			name: "batch dropped with the signing key",
			tamper: func(t *testing.T, s *memStore) {
				// Segment 9 now claims the batch after the next one.
				evs, err := ReadSegment(s.get(segKey(9)))
				if err != nil {
					t.Fatal(err)
				}
				for i := range evs {
					k := evs[i].Run.Facets.KafkaOffsets
					k.First, k.Last = k.First+10, k.Last+10
					for j := range k.Ranges {
						k.Ranges[j][0] += 10
						k.Ranges[j][1] += 10
					}
				}
				d := relink(t, evs, 9, evs[0].Run.Facets.Chain.Prev)
				s.set(segKey(9), signedWith(owner, d))
			},
			want: []string{"segment " + segKey(9), "seq 9", "offsets 130..139 have no lineage"},
		},
	}
	base := newMemStore()
	appendBatches(t, newTestWriter(t, base), "events-3", "events", 3, 100, 10, 4)
	if rep := mustVerify(t, base, nil); !rep.OK {
		t.Fatalf("untampered chain: %v", rep.Problems)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := base.clone()
			tc.tamper(t, s)
			var pub ed25519.PublicKey
			if tc.trusted {
				pub = owner.Public().(ed25519.PublicKey)
			}
			wantProblem(t, mustVerify(t, s, pub), tc.want)
		})
	}
	// The published-key case shows why a trusted key matters: with the
	// store's own key the rewrite passes.
	s := base.clone()
	for _, tc := range cases {
		if tc.name == "forged, re-signed and published key replaced" {
			tc.tamper(t, s)
		}
	}
	if rep := mustVerify(t, s, nil); !rep.OK {
		t.Errorf("sanity: a fully re-signed store with its key replaced verifies against that key; got %v", rep.Problems)
	}
}

// wantProblem fails unless verify failed with a problem that mentions
// every string of want.
func wantProblem(t *testing.T, rep VerifyReport, want []string) {
	t.Helper()
	if rep.OK {
		t.Fatal("verify passed")
	}
	for _, p := range rep.Problems {
		if containsAll(p, want) {
			return
		}
	}
	t.Errorf("no problem mentions all of %q; problems:\n%s", want, strings.Join(rep.Problems, "\n"))
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// TestVerifyCommits: every offset the consumer group committed must be in
// its partition's chain. A commit past the chain's end is what a chain
// deleted whole, or its last segments, leaves on a store that keeps no
// versions; a commit within the chain (or behind it: lineage written,
// commit lost to a crash) is fine.
func TestVerifyCommits(t *testing.T) {
	base := newMemStore()
	w := newTestWriter(t, base)
	appendBatches(t, w, "events-3", "events", 3, 100, 10, 4) // 100..139
	appendBatches(t, w, "events-1", "events", 1, 0, 10, 2)   // 0..19
	verify := func(s Store, next map[int]int64) VerifyReport {
		t.Helper()
		rep, err := VerifyWith(context.Background(), s, "lineage", VerifyOptions{
			Commits: &Commits{Pipeline: testPipeline, Topic: "events", Group: "sluice-card-fraud", Next: next}})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}

	rep := verify(base, map[int]int64{3: 140, 1: 12})
	if !rep.OK || rep.Commits != "checked" {
		t.Fatalf("commits within the chains: ok %v, commits %q, %v", rep.OK, rep.Commits, rep.Problems)
	}
	want := []Coverage{
		{Chain: testPipeline + "/events-1", Topic: "events", Partition: 1, First: 0, Last: 19},
		{Chain: testPipeline + "/events-3", Topic: "events", Partition: 3, First: 100, Last: 139},
	}
	if !slices.Equal(rep.Partitions, want) {
		t.Fatalf("coverage %+v, want %+v", rep.Partitions, want)
	}

	cases := []struct {
		name string
		edit func(s *memStore)
		next map[int]int64
		want []string
	}{
		{"commit past the chain", nil, map[int]int64{3: 150, 1: 20},
			[]string{"chain card-fraud/events-3", "group sluice-card-fraud committed events/3 through offset 149",
				"records it only through 139", "offsets 140..149 were committed without lineage"}},
		{"last segment deleted", func(s *memStore) { s.del(segKey(9)) }, map[int]int64{3: 140},
			[]string{"chain card-fraud/events-3", "through offset 139", "records it only through 129", "offsets 130..139"}},
		{"chain deleted whole", func(s *memStore) {
			deleteChain(s, "events-1")
		}, map[int]int64{3: 140, 1: 20},
			[]string{"chain card-fraud/events-1", "committed events/1 through offset 19", "no chain records the partition"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := base.clone()
			if tc.edit != nil {
				tc.edit(s)
			}
			wantProblem(t, verify(s, tc.next), tc.want)
		})
	}
	// Without commits, a chain deleted whole leaves no trace here (a folder
	// or unversioned bucket): the reason to pass them.
	s := base.clone()
	deleteChain(s, "events-1")
	if rep := mustVerify(t, s, nil); !rep.OK || rep.Commits != "not checked" {
		t.Fatalf("sanity: without commits a deleted chain is invisible; ok %v, commits %q, %v", rep.OK, rep.Commits, rep.Problems)
	}
}

// deleteChain deletes every object of a chain of the test pipeline.
func deleteChain(s *memStore, chain string) {
	for _, k := range s.keys("") {
		if strings.HasPrefix(k, "lineage/pipeline="+testPipeline+"/chain="+chain+"/") {
			s.del(k)
		}
	}
}

package syncer

import (
	"net/http"
	"testing"
	"time"
)

// TestDeviceNamesTellConflictsApart: two devices named by their people
// ("Paul's Laptop", "work desk") each lose a conflict on one note; the
// conflict files carry a file-name-safe slug of each name, so every
// device's list tells the two versions apart.
func TestDeviceNamesTellConflictsApart(t *testing.T) {
	a, b := twoDevicesOnANote(t, "Paul's Laptop", "work desk", 12)

	// a's version loses on a
	if res := loseOn(t, a, b, "a's edit", "b's edit"); res.Conflicts != 1 {
		t.Fatalf("a: conflicts = %d, want 1", res.Conflicts)
	}
	// and the other way round: b's version loses on b
	if res := loseOn(t, b, a, "b's second edit", "a's second edit"); res.Conflicts != 1 {
		t.Fatalf("b: conflicts = %d, want 1", res.Conflicts)
	}
	a.pass(t, PassOptions{})
	// and the bucket's version loses on a: a's edit is the newer one, so
	// bisync renames b's version in the bucket to a "cloud" conflict file
	b.write(t, "note.md", "b's third edit")
	b.pass(t, PassOptions{})
	time.Sleep(1100 * time.Millisecond)
	a.write(t, "note.md", "a's third edit")
	if res := a.pass(t, PassOptions{}); res.Conflicts != 1 {
		t.Fatalf("a, third: conflicts = %d, want 1", res.Conflicts)
	}
	b.pass(t, PassOptions{})

	for name, p := range map[string]*pair{"a": a, "b": b} {
		cs, err := ListConflicts(p.local)
		if err != nil {
			t.Fatal(err)
		}
		from := map[string]string{}
		for _, c := range cs {
			from[c.Device] = c.Path
		}
		if from["Paul-s-Laptop"] == "" || from["work-desk"] == "" || from["cloud"] == "" {
			t.Errorf("%s: conflict files %+v: want one from Paul-s-Laptop, one from work-desk and one from the bucket", name, cs)
		}
		// Each version's writer, by the name its person gave it, from
		// the bucket's record of who uploaded it: the bucket's loser
		// was b's upload.
		origins := p.engine.ConflictOrigins(t.Context(), cs)
		want := map[string]string{"Paul-s-Laptop": "Paul's Laptop", "work-desk": "work desk", "cloud": "work desk"}
		for label, path := range from {
			if got := origins[path]; got != want[label] {
				t.Errorf("%s: %s was written by %q, want %q", name, path, got, want[label])
			}
		}
		if len(origins) != len(cs) {
			t.Errorf("%s: origins %v for %d conflict files", name, origins, len(cs))
		}
	}
}

// TestConflictOriginsAskOnce: the writers of conflict files are asked of
// the bucket once per file (and size); a file the bucket has not got is
// left out and asked again.
func TestConflictOriginsAskOnce(t *testing.T) {
	s3 := newFakeS3(t)
	a := newPair(t, s3, "desk")
	seed(t, a, 3)
	a.write(t, "n.conflict-20260101-101010-desk.md", "a version")
	a.pass(t, PassOptions{})
	cs, err := ListConflicts(a.local)
	if err != nil || len(cs) != 1 {
		t.Fatalf("conflicts %v, %v", cs, err)
	}
	missing := Conflict{Path: "m.conflict-20260101-101010-cloud.md", Original: "m.md", Device: "cloud"}
	cs = append(cs, missing)
	var got map[string]string
	first := s3.delta(func() { got = a.engine.ConflictOrigins(t.Context(), cs) })
	if got[cs[0].Path] != "desk" || len(got) != 1 {
		t.Fatalf("origins %v, want only %s from desk", got, cs[0].Path)
	}
	if n := first[http.MethodHead]; n != 2 {
		t.Errorf("first ask: %d HEADs, want 2", n)
	}
	second := s3.delta(func() { got = a.engine.ConflictOrigins(t.Context(), cs) })
	if got[cs[0].Path] != "desk" {
		t.Errorf("second ask: origins %v", got)
	}
	if n := second[http.MethodHead]; n != 1 {
		t.Errorf("second ask: %d HEADs, want 1 (the file the bucket has not got)", n)
	}
}

// TestConflictsArrivedFromAnotherDevice: a conflict one device's pass
// makes is that pass's conflict there, and an arrived conflict on the
// other device, once, when its pass brings the conflict file down; the
// first device's own later passes do not count it again.
func TestConflictsArrivedFromAnotherDevice(t *testing.T) {
	a, b := twoDevicesOnANote(t, "desk", "laptop", 5)
	if res := loseOn(t, a, b, "a's edit", "b's edit"); res.Conflicts != 1 || res.ConflictsArrived != 0 {
		t.Fatalf("a: conflicts %d, arrived %d; want its own 1, 0 arrived", res.Conflicts, res.ConflictsArrived)
	}
	if res := b.pass(t, PassOptions{}); res.Conflicts != 0 || res.ConflictsArrived != 1 {
		t.Fatalf("b: conflicts %d, arrived %d; want 0 of its own, 1 arrived", res.Conflicts, res.ConflictsArrived)
	}
	for name, p := range map[string]*pair{"a": a, "b": b} {
		if res := p.pass(t, PassOptions{}); res.Conflicts+res.ConflictsArrived != 0 {
			t.Errorf("%s, a pass later: conflicts %d, arrived %d; want none", name, res.Conflicts, res.ConflictsArrived)
		}
	}
}

// twoDevicesOnANote is two devices (engines named nameA and nameB) on one
// bucket, both in step on note.md and n more notes.
func twoDevicesOnANote(t *testing.T, nameA, nameB string, n int) (a, b *pair) {
	t.Helper()
	s3 := newFakeS3(t)
	a, b = newPair(t, s3, nameA), newPair(t, s3, nameB)
	seed(t, a, n)
	a.write(t, "note.md", "original")
	a.pass(t, PassOptions{})
	b.pass(t, PassOptions{})
	return a, b
}

// loseOn edits note.md on loser, then (a second later, so the winner's
// version is the newer) on winner, which syncs it; it returns loser's
// pass, which keeps its own version as a conflict file.
func loseOn(t *testing.T, loser, winner *pair, mine, theirs string) Result {
	t.Helper()
	loser.write(t, "note.md", mine)
	time.Sleep(1100 * time.Millisecond)
	winner.write(t, "note.md", theirs)
	winner.pass(t, PassOptions{})
	return loser.pass(t, PassOptions{})
}

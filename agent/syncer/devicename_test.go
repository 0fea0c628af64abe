package syncer

import (
	"testing"
	"time"
)

// TestDeviceNamesTellConflictsApart: two devices named by their people
// ("Paul's Laptop", "work desk") each lose a conflict on one note; the
// conflict files carry a file-name-safe slug of each name, so every
// device's list tells the two versions apart.
func TestDeviceNamesTellConflictsApart(t *testing.T) {
	s3 := newFakeS3(t)
	a := newPair(t, s3, "Paul's Laptop")
	b := newPair(t, s3, "work desk")
	seed(t, a, 12)
	a.write(t, "note.md", "original")
	a.pass(t, PassOptions{})
	b.pass(t, PassOptions{})

	// a's edit is older than b's upload: a's version loses on a
	a.write(t, "note.md", "a's edit")
	time.Sleep(1100 * time.Millisecond)
	b.write(t, "note.md", "b's edit")
	b.pass(t, PassOptions{})
	if res := a.pass(t, PassOptions{}); res.Conflicts != 1 {
		t.Fatalf("a: conflicts = %d, want 1", res.Conflicts)
	}
	// and the other way round: b's version loses on b
	b.write(t, "note.md", "b's second edit")
	time.Sleep(1100 * time.Millisecond)
	a.write(t, "note.md", "a's second edit")
	a.pass(t, PassOptions{})
	if res := b.pass(t, PassOptions{}); res.Conflicts != 1 {
		t.Fatalf("b: conflicts = %d, want 1", res.Conflicts)
	}
	a.pass(t, PassOptions{})

	for name, p := range map[string]*pair{"a": a, "b": b} {
		cs, err := ListConflicts(p.local)
		if err != nil {
			t.Fatal(err)
		}
		from := map[string]string{}
		for _, c := range cs {
			from[c.Device] = c.Path
		}
		if from["Paul-s-Laptop"] == "" || from["work-desk"] == "" {
			t.Errorf("%s: conflict files %+v: want one from Paul-s-Laptop and one from work-desk", name, cs)
		}
	}
}

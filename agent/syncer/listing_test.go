package syncer

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestSetListingEntries: the entries set are replaced, added or removed,
// and every other line stays byte for byte, whatever the names hold
// (quotes, ` "`, a name that ends another's).
func TestSetListingEntries(t *testing.T) {
	at := time.Date(2026, 12, 2, 10, 0, 0, 123_000_000, time.UTC)
	names := []string{`a.md`, `dir/b "quoted".md`, `say "x" "y".md`, `x a.md`, `ü/ß.md`, `keep.md`}
	var data []byte
	data = append(data, "# bisync listing v1 from test\n"...)
	for i, n := range names {
		data = append(data, listingLineFor(n, listingEntry{size: int64(i), time: at})...)
	}
	data = append(data, "d        0 - - 2026-12-02T10:00:00.000000000+0000 \"dir\"\n"...)
	path := filepath.Join(t.TempDir(), "listing.lst")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	later := at.Add(time.Hour)
	set := map[string]*listingEntry{
		`say "x" "y".md`: {size: 99, time: later}, // replaced
		`a.md`:           nil,                     // removed (not "x a.md")
		`new "one".md`:   {size: 7, time: later},  // added
		`not there.md`:   nil,                     // nothing to remove
	}
	if err := setListingEntries(path, set); err != nil {
		t.Fatal(err)
	}
	got, err := readListingWhere(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]listingEntry{
		`dir/b "quoted".md`: {size: 1, time: at},
		`say "x" "y".md`:    {size: 99, time: later},
		`x a.md`:            {size: 3, time: at},
		`ü/ß.md`:            {size: 4, time: at},
		`keep.md`:           {size: 5, time: at},
		`new "one".md`:      {size: 7, time: later},
	}
	if len(got) != len(want) {
		t.Fatalf("entries %v, want %v", got, want)
	}
	for n, w := range want {
		if g, ok := got[n]; !ok || g.size != w.size || !g.time.Equal(w.time) {
			t.Errorf("%q = %+v (%v), want %+v", n, g, ok, w)
		}
	}
	// the few names' entries alone, as the quick pass reads them
	few, err := listingEntriesOf(path, map[string]bool{`x a.md`: true, `a.md`: true, `ü/ß.md`: true})
	if err != nil || len(few) != 2 || few[`x a.md`].size != 3 || few[`ü/ß.md`].size != 4 {
		t.Errorf("listingEntriesOf = %v, %v; want x a.md and ü/ß.md", few, err)
	}
	after, _ := os.ReadFile(path)
	for _, kept := range []string{"# bisync listing v1 from test\n", "d        0 - - 2026-12-02T10:00:00.000000000+0000 \"dir\"\n", listingLineFor(`keep.md`, listingEntry{size: 5, time: at})} {
		if !bytes.Contains(after, []byte(kept)) {
			t.Errorf("line %q not kept as it was:\n%s", kept, after)
		}
	}
}

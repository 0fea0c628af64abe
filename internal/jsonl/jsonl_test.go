package jsonl

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

type rec struct {
	N int    `json:"n"`
	S string `json:"s"`
}

func TestAppendReadAcrossATornLine(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log.jsonl")
	if err := Append(p, rec{1, "a"}, true); err != nil {
		t.Fatal(err)
	}
	// a crash in the middle of the second append
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"n":2,"s":"tor`); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := Append(p, rec{3, "c"}, false); err != nil {
		t.Fatal(err)
	}
	got, err := Read[rec](p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []rec{{1, "a"}, {3, "c"}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("read %v, want %v", got, want)
	}
	odd, err := Read(p, func(r rec) bool { return r.N%2 == 1 && r.S != "a" })
	if err != nil || !reflect.DeepEqual(odd, []rec{{3, "c"}}) {
		t.Fatalf("filtered read %v, %v", odd, err)
	}
}

func TestWriteReplaces(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log.jsonl")
	for _, r := range []rec{{1, "a"}, {2, "b"}} {
		if err := Append(p, r, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := Write(p, []rec{{9, "z"}}); err != nil {
		t.Fatal(err)
	}
	got, err := Read[rec](p, nil)
	if err != nil || !reflect.DeepEqual(got, []rec{{9, "z"}}) {
		t.Fatalf("after write: %v, %v", got, err)
	}
	missing, err := Read[rec](filepath.Join(t.TempDir(), "none"), nil)
	if err != nil || missing != nil {
		t.Fatalf("missing file: %v, %v", missing, err)
	}
}

//go:build !windows

package ipc

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// resolveBackend settles conflicts of one note.
type resolveBackend struct {
	*fakeBackend
	got []ResolveRequest
}

func (r *resolveBackend) Resolve(_ context.Context, req ResolveRequest) (ResolveResult, error) {
	r.got = append(r.got, req)
	if req.Path != "a.md" {
		return ResolveResult{}, fmt.Errorf("resolve: %w: no conflict", ErrNotFound)
	}
	return ResolveResult{Folder: "/notes", Note: "a.md", Removed: []string{"a.conflict-20261202-101010-laptop.md"}}, nil
}

func TestResolveRoute(t *testing.T) {
	rb := &resolveBackend{fakeBackend: &fakeBackend{}}
	c := NewClient(startServer(t, rb))
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		req  ResolveRequest
		want error
	}{
		{"mine", ResolveRequest{Path: "a.md", Keep: KeepMine}, nil},
		{"no such conflict", ResolveRequest{Path: "b.md", Keep: KeepBoth}, ErrNotFound},
		{"a bad keep", ResolveRequest{Path: "a.md", Keep: "newest"}, ErrInvalid},
		{"no path", ResolveRequest{Keep: KeepTheirs}, ErrInvalid},
	} {
		res, err := c.Resolve(ctx, tc.req)
		if !errors.Is(err, tc.want) || (tc.want == nil && (res.Note != "a.md" || len(res.Removed) != 1)) {
			t.Errorf("%s: Resolve = %+v, %v; want %v", tc.name, res, err, tc.want)
		}
	}
	if len(rb.got) != 2 {
		t.Errorf("the backend got %d requests, want 2 (bad ones are refused before it)", len(rb.got))
	}
	// a daemon without the route says so
	if _, err := NewClient(startServer(t, &fakeBackend{})).Resolve(ctx, ResolveRequest{Path: "a.md", Keep: KeepMine}); !errors.Is(err, ErrNotImplemented) {
		t.Errorf("Resolve on a daemon without it: %v", err)
	}
}

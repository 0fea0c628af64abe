//go:build !windows

package ipc

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// versionsBackend serves the version routes from a fixed set.
type versionsBackend struct {
	*fakeBackend
	got  []any
	kept []Version
}

func (v *versionsBackend) Versions(_ context.Context, req VersionsRequest) (Versions, error) {
	v.got = append(v.got, req)
	if req.Path == "../x" {
		return Versions{}, fmt.Errorf("versions: %w: not in the folder", ErrInvalid)
	}
	out := Versions{Path: req.Path, Folder: "/notes", DaysKept: 30}
	for _, k := range v.kept {
		if (req.Deleted && k.Reason == ReasonDeleted && !k.Kept.Before(req.Since)) || (!req.Deleted && k.Path == req.Path) {
			out.Versions = append(out.Versions, k)
		}
	}
	return out, nil
}

func (v *versionsBackend) Restore(_ context.Context, req RestoreRequest) (RestoreResult, error) {
	v.got = append(v.got, req)
	for _, k := range v.kept {
		if k.Path == req.Path && (req.Version == "" || req.Version == k.ID) {
			return RestoreResult{Folder: "/notes", Restored: []Version{k}}, nil
		}
	}
	return RestoreResult{}, fmt.Errorf("restore: %w: no version", ErrNotFound)
}

func TestVersionRoutes(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Millisecond)
	vb := &versionsBackend{fakeBackend: &fakeBackend{}, kept: []Version{
		{ID: "l00000001", Path: "a.md", Side: VersionSideLocal, Size: 3, Kept: now, Reason: ReasonOverwritten, Device: "laptop"},
		{ID: "c00000002", Path: "b.md", Side: VersionSideCloud, Size: 4, Kept: now, Reason: ReasonDeleted},
	}}
	c := NewClient(startServer(t, vb))
	ctx := context.Background()

	vs, err := c.Versions(ctx, VersionsRequest{Path: "a.md"})
	if err != nil || len(vs.Versions) != 1 || vs.Versions[0] != vb.kept[0] || vs.DaysKept != 30 {
		t.Fatalf("Versions(a.md) = %+v, %v", vs, err)
	}
	vs, err = c.Versions(ctx, VersionsRequest{Deleted: true, Since: now.Add(-time.Hour)})
	if err != nil || len(vs.Versions) != 1 || vs.Versions[0].Path != "b.md" {
		t.Fatalf("Versions(deleted) = %+v, %v", vs, err)
	}
	if got := vb.got[1].(VersionsRequest); !got.Since.Equal(now.Add(-time.Hour)) {
		t.Errorf("since arrived as %v", got.Since)
	}
	vs, err = c.Versions(ctx, VersionsRequest{Path: "none.md"})
	if err != nil || vs.Versions == nil || len(vs.Versions) != 0 {
		t.Errorf("no versions = %+v (want an empty list, not null), %v", vs, err)
	}
	if _, err := c.Versions(ctx, VersionsRequest{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("no path, no deleted: %v, want ErrInvalid", err)
	}
	if _, err := c.Versions(ctx, VersionsRequest{Path: "../x"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad path: %v, want ErrInvalid", err)
	}

	res, err := c.Restore(ctx, RestoreRequest{Path: "a.md", Version: "l00000001"})
	if err != nil || len(res.Restored) != 1 || res.Restored[0].ID != "l00000001" {
		t.Fatalf("Restore = %+v, %v", res, err)
	}
	if _, err := c.Restore(ctx, RestoreRequest{Path: "a.md", Version: "l99999999"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown version: %v, want ErrNotFound", err)
	}
	if _, err := c.Restore(ctx, RestoreRequest{Path: "a.md", Deleted: true}); !errors.Is(err, ErrInvalid) {
		t.Errorf("path and deleted: %v, want ErrInvalid", err)
	}
	// a backend without versions says so
	if _, err := NewClient(startServer(t, &fakeBackend{})).Versions(ctx, VersionsRequest{Path: "a.md"}); !errors.Is(err, ErrNotImplemented) {
		t.Errorf("no Versioner: %v", err)
	}
}

package syncer

import (
	"context"
	"fmt"
	"strings"

	rfs "github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/filter"
)

// Why the engine applies the ignore rules itself.
//
// rclone's filter checks every rule against every path with a Go regexp,
// and Basic Memory's default .bmignore, even merged into one alternation
// (mergeExcludes), costs 55–80 µs a path on these machines: with 10,000
// notes on each side, most of a no-change pass. Yet nearly every path is
// a note no rule can match. So the pass's file systems (guardFs) drop the
// ignored entries from each listing themselves: a path none of the rules'
// literal parts occur in (prefilter) cannot be excluded and is kept at
// once; any other goes to an rclone filter of the same rules, so what is
// ignored is exactly what rclone's filter would ignore. bisync's filters
// file then holds the fixed header rules (cheap: anchored literals) and
// the ignore rules as comments, so that it still changes, and the engine
// still re-checks both sides, when .bmignore does.

// ignoreMatcher says whether a path is ignored, with rclone's semantics.
type ignoreMatcher struct {
	rules []string       // the rclone filter rules, first match wins
	fi    *filter.Filter // the rules, as rclone applies them
	conds []literalCond  // a path none holds for matches no exclude rule
	every bool           // an exclude rule has no literal: check every path
}

// literalCond is a necessary condition for an exclude rule to match: its
// literal part occurs in the path, at the start of a path element when
// the rule starts with it.
type literalCond struct {
	lit      string
	atStart  bool // at the path's start or right after a "/"
	anywhere bool // the rule is unanchored (matches at any depth)
}

func (c literalCond) holds(path string) bool {
	if !c.atStart {
		return strings.Contains(path, c.lit)
	}
	if strings.HasPrefix(path, c.lit) {
		return true
	}
	return c.anywhere && strings.Contains(path, "/"+c.lit)
}

// newIgnoreMatcher builds the matcher of rclone filter rules ("- glob",
// "+ glob"; comments and blank lines are skipped).
func newIgnoreMatcher(rules []string) (*ignoreMatcher, error) {
	opt := filter.Opt
	opt.FilterRule, opt.FilterFrom = nil, nil
	m := &ignoreMatcher{}
	for _, r := range rules {
		r = strings.TrimSpace(r)
		if r == "" || strings.HasPrefix(r, "#") {
			continue
		}
		m.rules = append(m.rules, r)
		glob, ok := strings.CutPrefix(r, "- ")
		if !ok {
			continue // includes only matter once an exclude could match
		}
		for _, alt := range braceAlternatives(glob) {
			c, ok := literalOf(alt)
			if !ok {
				m.every = true
				continue
			}
			m.conds = append(m.conds, c)
		}
	}
	m.conds = dedupeConds(m.conds)
	opt.FilterRule = m.rules
	fi, err := filter.NewFilter(&opt)
	if err != nil {
		return nil, fmt.Errorf("ignore rules: %w", err)
	}
	m.fi = fi
	return m, nil
}

// dedupeConds drops each condition another one implies: when b holds, a
// does, so checking a alone finds every path b would.
func dedupeConds(conds []literalCond) []literalCond {
	implies := func(b, a literalCond) bool { // b holds => a holds
		if !a.atStart {
			return strings.Contains(b.lit, a.lit)
		}
		return b.atStart && strings.HasPrefix(b.lit, a.lit) && (a.anywhere || !b.anywhere)
	}
	var out []literalCond
	for i, b := range conds {
		redundant := false
		for j, a := range conds {
			if i != j && implies(b, a) && (a != b || j < i) {
				redundant = true
				break
			}
		}
		if !redundant {
			out = append(out, b)
		}
	}
	return out
}

// braceAlternatives splits a glob that is one top-level brace alternation
// ("{a,b/**,*.db}", which mergeExcludes makes) into its alternatives; any
// other glob is its own only alternative. (mergeExcludes never merges a
// glob holding ",", "{", "}" or "\", so the split is exact.)
func braceAlternatives(glob string) []string {
	anchor := ""
	if rest, ok := strings.CutPrefix(glob, "/"); ok {
		anchor, glob = "/", rest
	}
	inner, ok := strings.CutPrefix(glob, "{")
	if !ok || !strings.HasSuffix(inner, "}") || strings.ContainsAny(inner[:len(inner)-1], "{}\\") {
		return []string{anchor + glob}
	}
	alts := strings.Split(inner[:len(inner)-1], ",")
	for i := range alts {
		alts[i] = anchor + alts[i]
	}
	return alts
}

// literalOf is the necessary condition of one glob (no braces): the
// longest run of literal characters. ok is false when it has none, or
// when it holds a construct the scan does not follow (braces).
func literalOf(glob string) (literalCond, bool) {
	anchored := strings.HasPrefix(glob, "/")
	glob = strings.TrimPrefix(glob, "/")
	var runs []string
	var cur strings.Builder
	starts := []bool{}
	curStart := true
	flush := func() {
		if cur.Len() > 0 {
			runs = append(runs, cur.String())
			starts = append(starts, curStart)
		}
		cur.Reset()
		curStart = false
	}
	for i := 0; i < len(glob); i++ {
		switch c := glob[i]; c {
		case '\\':
			if i+1 < len(glob) {
				i++
				cur.WriteByte(glob[i])
			}
		case '*', '?':
			flush()
		case '[':
			flush()
			j := strings.IndexByte(glob[i+1:], ']')
			if j < 0 {
				return literalCond{}, false
			}
			i += j + 1
		case '{', '}':
			return literalCond{}, false
		default: // a "/" too: it is literal in a run
			cur.WriteByte(c)
		}
	}
	flush()
	best := -1
	for i, r := range runs {
		if best < 0 || len(r) > len(runs[best]) {
			best = i
		}
	}
	if best < 0 {
		return literalCond{}, false
	}
	return literalCond{lit: runs[best], atStart: starts[best], anywhere: !anchored}, true
}

// couldExclude reports whether an exclude rule could match path (false:
// certainly kept).
func (m *ignoreMatcher) couldExclude(path string) bool {
	if m.every {
		return true
	}
	for _, c := range m.conds {
		if c.holds(path) {
			return true
		}
	}
	return false
}

// ignored reports whether the entry remote (a directory when dir) is
// ignored.
func (m *ignoreMatcher) ignored(ctx context.Context, remote string, dir bool) bool {
	if m == nil {
		return false
	}
	if dir {
		if !m.couldExclude(remote + "/") {
			return false
		}
		ok, err := m.fi.IncludeDirectory(ctx, nil)(remote)
		return err == nil && !ok
	}
	if !m.couldExclude(remote) {
		return false
	}
	return !m.fi.IncludeRemote(remote)
}

// filterEntries drops the ignored entries of a listing, in place.
func (m *ignoreMatcher) filterEntries(ctx context.Context, entries rfs.DirEntries) rfs.DirEntries {
	if m == nil {
		return entries
	}
	out := entries[:0]
	for _, e := range entries {
		_, dir := e.(rfs.Directory)
		if !m.ignored(ctx, e.Remote(), dir) {
			out = append(out, e)
		}
	}
	return out
}

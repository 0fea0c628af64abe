package syncer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/rclone/rclone/fs/filter"
)

// TestIgnoreMatcherAgreesWithRclone: for many ignore files and many paths
// (notes, names close to the rules, dot files, deep folders, odd
// characters), files and folders, the engine's matcher ignores exactly
// what rclone's filter of the same rules excludes: the prefilter only
// ever skips paths no rule can match.
func TestIgnoreMatcherAgreesWithRclone(t *testing.T) {
	ignores := []string{
		DefaultIgnore,
		"",
		"*\n!*.md\n",
		"notes/private/\n/todo.md\n**/cache\na/**/b.md\nlogs/**\n",
		"*.md\n!keep.md\n[Tt]emp*\nfile?.txt\n\\#hash\n",
		"build\n!build/keep\n/dist/\n*.log\n.env*\n",
		"ünïcode/\n*~\n*.sw[op]\n__pycache__\n",
	}
	parts := []string{"notes", "a", "b.md", "node_modules", "build", "dist", ".git", ".env", ".envrc", "env",
		"environment.md", "cache", "cachex", "logs", "keep.md", "todo.md", "private", "file1.txt", "fileX.txt",
		"temp.md", "Temp", "x.db", "x.db-wal", "x.dbnotes.md", "note.md~", "a.swp", "#hash", "ünïcode",
		"with space.md", "a,b", "{x}", "[y]", "RCLONE_TEST", ".bmignore", ".bm-versions", "n.bmpart", "config.json"}
	r := rand.New(rand.NewPCG(1, 2))
	var paths []string
	for range 3000 {
		n := 1 + r.IntN(4)
		var p []string
		for range n {
			p = append(p, parts[r.IntN(len(parts))])
		}
		paths = append(paths, strings.Join(p, "/"))
	}
	ctx := context.Background()
	for i, text := range ignores {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			rules := filterRules(text)
			f, err := filter.NewFilter(nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, rule := range rules {
				if err := f.AddRule(rule); err != nil {
					t.Fatalf("rule %q: %v", rule, err)
				}
			}
			m, err := newIgnoreMatcher(rules)
			if err != nil {
				t.Fatal(err)
			}
			skipped := 0
			for _, p := range paths {
				if want, got := !f.IncludeRemote(p), m.ignored(ctx, p, false); got != want {
					t.Errorf("file %q: matcher ignores it %v, rclone excludes it %v (rules %q)", p, got, want, rules)
				}
				dirOK, err := f.IncludeDirectory(ctx, nil)(p)
				if err != nil {
					t.Fatal(err)
				}
				if want, got := !dirOK, m.ignored(ctx, p, true); got != want {
					t.Errorf("folder %q: matcher ignores it %v, rclone excludes it %v (rules %q)", p, got, want, rules)
				}
				if !m.couldExclude(p) {
					skipped++
				}
			}
			t.Logf("ignore file %d: %d rules, the prefilter settled %d of %d paths", i, len(rules), skipped, len(paths))
		})
	}
}

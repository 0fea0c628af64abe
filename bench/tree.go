package bench

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// notesPerDir is how many notes a generated folder holds.
const notesPerDir = 100

// treeEpoch is the modification time of the first generated note; the
// others follow a minute apart, so two trees of one size are identical,
// times included.
var treeEpoch = time.Date(2025, 1, 1, 9, 0, 0, 0, time.UTC)

var words = strings.Fields(`memory note graph entity relation observation
	project meeting idea draft review research summary decision question answer
	context link tag daily weekly plan goal task done todo follow-up source quote
	reference book article paper talk chapter section model system design sync
	device cloud bucket folder file change version history conflict merge edit`)

// NotePath is the slash path of note i in a generated tree:
// area-AA/topic-TTT/note-NNNNN.md, a hundred notes per topic.
func NotePath(i int) string {
	dir := i / notesPerDir
	return fmt.Sprintf("area-%02d/topic-%03d/note-%05d.md", dir/50, dir%50, i)
}

// noteBody is note i's generated markdown: front matter, a title and
// 200 B to 4 KiB of words, the same for every call with the same i.
func noteBody(i int) []byte {
	r := rand.New(rand.NewPCG(uint64(i), 0x626d2d6265))
	var b strings.Builder
	fmt.Fprintf(&b, "---\ntitle: Note %d\ntype: note\npermalink: note-%05d\ntags: [%s, %s]\n---\n\n# Note %d\n\n",
		i, i, words[r.IntN(len(words))], words[r.IntN(len(words))], i)
	size := 200 + r.IntN(3800)
	for b.Len() < size {
		for range 8 + r.IntN(12) {
			b.WriteString(words[r.IntN(len(words))])
			b.WriteByte(' ')
		}
		b.WriteString(".\n")
		if r.IntN(4) == 0 {
			fmt.Fprintf(&b, "\n- [%s] %s [[Note %d]]\n\n", words[r.IntN(len(words))], words[r.IntN(len(words))], r.IntN(i+1))
		}
	}
	return []byte(b.String())
}

// GenerateTree writes the same deterministic tree of n notes under each
// root (which must not hold other files) and returns the bytes of one.
func GenerateTree(n int, roots ...string) (int64, error) {
	var total int64
	made := map[string]bool{}
	for i := range n {
		body := noteBody(i)
		t := treeEpoch.Add(time.Duration(i) * time.Minute)
		for _, root := range roots {
			p := filepath.Join(root, filepath.FromSlash(NotePath(i)))
			if d := filepath.Dir(p); !made[d] {
				if err := os.MkdirAll(d, 0o700); err != nil {
					return 0, err
				}
				made[d] = true
			}
			if err := os.WriteFile(p, body, 0o600); err != nil {
				return 0, err
			}
			if err := os.Chtimes(p, t, t); err != nil {
				return 0, err
			}
		}
		total += int64(len(body))
	}
	return total, nil
}

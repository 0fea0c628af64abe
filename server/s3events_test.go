package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/basicmachines-co/bm-agent/server/api"
	"github.com/basicmachines-co/bm-agent/server/events"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// mintAs creates a mount key with token and the description an agent on
// device gives its keys.
func mintAs(t *testing.T, srv *running, token, device string) tenantapi.MountCredentials {
	t.Helper()
	body, _ := json.Marshal(tenantapi.CreateCredentialsRequest{Description: agentKeyPrefix + device})
	code, resp := do(t, http.MethodPost, srv.URL()+tenantapi.PathMountCredentials, token, string(body), nil)
	if code != http.StatusOK {
		t.Fatalf("mint = %d %s", code, resp)
	}
	var mc tenantapi.MountCredentials
	if err := json.Unmarshal([]byte(resp), &mc); err != nil {
		t.Fatal(err)
	}
	return mc
}

// quiet fails if es delivers an event within d.
func (es *eventStream) quiet(t *testing.T, d time.Duration, what string) {
	t.Helper()
	select {
	case ev := <-es.events:
		t.Errorf("%s: unexpected event %+v", what, ev)
	case <-time.After(d):
	}
}

// storageAudit sums the changes= of the bucket.changed records of tenant
// with source=source, and counts them.
func storageAudit(t *testing.T, srv *running, tenant, source string) (records, changes int) {
	t.Helper()
	evs, err := srv.Store().ListAudit(context.Background(), tenant, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Kind != api.AuditBucketChanged || !strings.HasPrefix(e.Detail, "source="+source+" ") {
			continue
		}
		var n int
		if _, err := fmt.Sscanf(strings.TrimPrefix(e.Detail, "source="+source+" "), "changes=%d", &n); err != nil {
			t.Fatalf("audit detail %q: %v", e.Detail, err)
		}
		records++
		changes += n
	}
	return records, changes
}

// TestEmbeddedS3ChangeEvents: a write through the embedded S3 endpoint,
// by any S3 client (aws-sdk-go-v2 here), reaches the tenant's event stream
// (GET /tenant/events, the route the agents follow) within about a second,
// naming the writing agent's device; a burst is coalesced; reads send
// nothing; another tenant hears nothing.
func TestEmbeddedS3ChangeEvents(t *testing.T) {
	ctx := context.Background()
	// The maximum wait is raised so that a burst is one event however
	// slow the machine (under -race, 200 PUTs take about 2 s here, the
	// default maximum wait); events' own tests cover the maximum wait.
	r := serve(t, func(c *Config) { c.ChangeMaxWait = time.Minute })
	accA, err := r.Store().AccountByEmail(ctx, demoEmail)
	if err != nil {
		t.Fatal(err)
	}
	tenantA := accA.TenantID
	accB, err := r.CreateAccount(ctx, "carol@example.com", "carol's long password")
	if err != nil {
		t.Fatal(err)
	}
	tokA := login(t, r.Server, demoEmail, demoPassword)
	tokB := login(t, r.Server, "carol@example.com", "carol's long password")
	subA, subB := subscribe(t, r, tokA), subscribe(t, r, tokB)
	waitFor(t, 5*time.Second, "both subscribed", func() bool {
		return r.Events().Subscribers(tenantA) == 1 && r.Events().Subscribers(accB.TenantID) == 1
	})
	laptop := mintAs(t, r, tokA, "laptop")
	a := s3Client(laptop)
	bucketA := aws.String(laptop.BucketName)
	window := events.DefaultDelay

	t.Run("one PUT, one event within a second", func(t *testing.T) {
		start := time.Now()
		if _, err := a.PutObject(ctx, &s3.PutObjectInput{Bucket: bucketA, Key: aws.String("note.md"), Body: strings.NewReader("# note\n")}); err != nil {
			t.Fatal(err)
		}
		ev := subA.next(t, time.Second)
		t.Logf("PUT to event: %s (delay %s)", time.Since(start).Round(time.Millisecond), window)
		if ev.TenantID != tenantA || ev.Device != "laptop" || ev.Reason != "embedded:PutObject" || ev.At.IsZero() || !slices.Equal(ev.Keys, []string{"note.md"}) {
			t.Errorf("event = %+v, want tenant A's, device laptop, reason embedded:PutObject, keys [note.md]", ev)
		}
		subA.quiet(t, 2*window, "after one PUT")
		subB.quiet(t, 0, "tenant B after A's PUT")
	})

	t.Run("reads send nothing", func(t *testing.T) {
		if _, err := a.GetObject(ctx, &s3.GetObjectInput{Bucket: bucketA, Key: aws.String("note.md")}); err != nil {
			t.Fatal(err)
		}
		if _, err := a.HeadObject(ctx, &s3.HeadObjectInput{Bucket: bucketA, Key: aws.String("note.md")}); err != nil {
			t.Fatal(err)
		}
		if _, err := a.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: bucketA}); err != nil {
			t.Fatal(err)
		}
		if _, err := a.ListObjects(ctx, &s3.ListObjectsInput{Bucket: bucketA}); err != nil {
			t.Fatal(err)
		}
		subA.quiet(t, 3*window, "GET, HEAD, LIST")
	})

	t.Run("a burst of 200 PUTs, coalesced", func(t *testing.T) {
		recordsBefore, changesBefore := storageAudit(t, r, tenantA, "embedded")
		const n, workers = 200, 20
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for w := range workers {
			wg.Go(func() {
				for i := w; i < n; i += workers {
					if _, err := a.PutObject(ctx, &s3.PutObjectInput{Bucket: bucketA, Key: aws.String(fmt.Sprintf("burst/%03d.md", i)), Body: bytes.NewReader([]byte("x"))}); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		burst := time.Since(start)
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		// Events until the stream is quiet for two windows.
		var got []events.Event
		for {
			select {
			case ev := <-subA.events:
				got = append(got, ev)
				continue
			case <-time.After(2 * window):
			}
			break
		}
		t.Logf("200 PUTs from %d clients took %s: %d event(s)", workers, burst.Round(time.Millisecond), len(got))
		if len(got) != 1 {
			t.Fatalf("%d events for a burst of 200 PUTs, want 1: %+v", len(got), got)
		}
		if ev := got[0]; ev.TenantID != tenantA || ev.Device != "laptop" || ev.Reason != "embedded:PutObject" || ev.Keys != nil {
			t.Errorf("event = %+v, want no keys (more than %d)", ev, events.MaxKeys)
		}
		// One audit record, counting the 200 writes.
		records, changes := storageAudit(t, r, tenantA, "embedded")
		if records != recordsBefore+1 || changes != changesBefore+n {
			t.Errorf("audit: %d records with %d changes after the burst, want %d with %d", records, changes, recordsBefore+1, changesBefore+n)
		}
		subB.quiet(t, 0, "tenant B after A's burst")
	})

	t.Run("another client's write names no device", func(t *testing.T) {
		other := s3Client(mint(t, r, tokA)) // description "test": not an agent's
		if _, err := other.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: bucketA, Key: aws.String("note.md")}); err != nil {
			t.Fatal(err)
		}
		if ev := subA.next(t, time.Second); ev.Device != "" || ev.Reason != "embedded:DeleteObject" || !slices.Equal(ev.Keys, []string{"note.md"}) {
			t.Errorf("event = %+v, want no device, reason embedded:DeleteObject, keys [note.md]", ev)
		}
		// Two writers in one window: no device either, so the laptop looks too.
		if _, err := a.PutObject(ctx, &s3.PutObjectInput{Bucket: bucketA, Key: aws.String("l.md"), Body: strings.NewReader("l")}); err != nil {
			t.Fatal(err)
		}
		if _, err := other.CopyObject(ctx, &s3.CopyObjectInput{Bucket: bucketA, Key: aws.String("c.md"), CopySource: aws.String(laptop.BucketName + "/l.md")}); err != nil {
			t.Fatal(err)
		}
		if ev := subA.next(t, time.Second); ev.Device != "" || !slices.Equal(ev.Keys, []string{"l.md", "c.md"}) {
			t.Errorf("event of two writers = %+v, want no device, keys [l.md c.md]", ev)
		}
		subA.quiet(t, 2*window, "after the two writers")
	})

	t.Run("another tenant's bucket", func(t *testing.T) {
		b := s3Client(mintAs(t, r, tokB, "carol-phone"))
		mcB := mintAs(t, r, tokB, "carol-tablet")
		if _, err := b.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(mcB.BucketName), Key: aws.String("b.md"), Body: strings.NewReader("b")}); err != nil {
			t.Fatal(err)
		}
		if ev := subB.next(t, time.Second); ev.TenantID != accB.TenantID || ev.Device != "carol-phone" {
			t.Errorf("B's event = %+v", ev)
		}
		// A's key cannot write into B's bucket: refused, and nobody hears of it.
		if _, err := a.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(mcB.BucketName), Key: aws.String("x.md"), Body: strings.NewReader("x")}); err == nil {
			t.Error("A's key wrote into B's bucket")
		}
		subA.quiet(t, 2*window, "tenant A after B's write")
		subB.quiet(t, 0, "tenant B after A's refused write")
	})
}

// TestRevokedKeyRefusedAtOnce: with the key cache on (the default), a key
// revoked through DELETE /tenant/mount/credentials/{id} is refused by the
// embedded S3 endpoint on the very next request, while the tenant's other
// key keeps working.
func TestRevokedKeyRefusedAtOnce(t *testing.T) {
	ctx := context.Background()
	r := serve(t, nil)
	tok := login(t, r.Server, demoEmail, demoPassword)
	mc, keep := mint(t, r, tok), mint(t, r, tok)
	c, k := s3Client(mc), s3Client(keep)
	list := func(c *s3.Client) error {
		_, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(mc.BucketName)})
		return err
	}
	for range 3 { // cached now
		if err := list(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := list(k); err != nil {
		t.Fatal(err)
	}
	code, body := do(t, http.MethodDelete, r.URL()+tenantapi.PathMountCredentials+"/"+mc.CredentialID, tok, "", nil)
	if code != http.StatusOK {
		t.Fatalf("DELETE = %d %s", code, body)
	}
	if err := list(c); err == nil {
		t.Error("the revoked key listed the bucket on the next request")
	}
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(mc.BucketName), Key: aws.String("x.md"), Body: strings.NewReader("x")}); err == nil {
		t.Error("the revoked key wrote")
	}
	if err := list(k); err != nil {
		t.Errorf("the tenant's other key: %v", err)
	}
}

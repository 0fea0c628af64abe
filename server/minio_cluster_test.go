package server

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/basicmachines-co/bm-agent/server/storage/minio/miniotest"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// TestMinIOClusterStorage runs the server with --storage minio against a
// distributed MinIO (four one-drive nodes, erasure-coded) through node 1,
// as a fleet of bm-servers would use one: the agent's flow (sign in, mint
// a key, put and get with it) works through the other nodes, a key
// revoked through the API is refused at every node, and with a node down
// the server stays ready and mints keys that work.
func TestMinIOClusterStorage(t *testing.T) {
	ctx := context.Background()
	cluster := miniotest.StartCluster(t, 4, 1)
	r := serve(t, func(c *Config) { useMinIO(c, cluster.Nodes[0].URL) })
	if code, rep, err := readyz(r.URL()); code != http.StatusOK || err != nil {
		t.Fatalf("readyz = %d %+v %v", code, rep, err)
	}
	token := login(t, r.Server, demoEmail, demoPassword)
	mc := mint(t, r, token)
	if mc.EndpointURL != cluster.Nodes[0].URL {
		t.Errorf("credentials point at %q, want node 1 %s", mc.EndpointURL, cluster.Nodes[0].URL)
	}
	key := keyOf(mc)
	// at node i: the minted key as the agent's S3 client would hold it,
	// pointed at another node.
	at := func(i int) *s3.Client { return cluster.Nodes[i].Client(key) }
	put := func(c *s3.Client, name, body string) error {
		_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(mc.BucketName), Key: aws.String(name), Body: strings.NewReader(body)})
		return err
	}
	waitFor(t, 30*time.Second, "the key minted through node 1 writes through node 2", func() bool {
		return put(at(1), "notes/a.md", "written through node 2") == nil
	})
	for i := range cluster.Nodes {
		out, err := at(i).GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(mc.BucketName), Key: aws.String("notes/a.md")})
		if err != nil {
			t.Errorf("GET through node %d: %v", i+1, err)
			continue
		}
		b, _ := io.ReadAll(out.Body)
		out.Body.Close()
		if !bytes.Equal(b, []byte("written through node 2")) {
			t.Errorf("GET through node %d = %q", i+1, b)
		}
	}

	code, body := do(t, http.MethodDelete, r.URL()+tenantapi.PathMountCredentials+"/"+mc.CredentialID, token, "", nil)
	if code != http.StatusOK || !strings.Contains(body, `"deletion_status":"completed"`) {
		t.Fatalf("DELETE = %d %s", code, body)
	}
	for i := range cluster.Nodes {
		waitFor(t, 30*time.Second, "every node refuses the revoked key", func() bool {
			_, err := at(i).ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(mc.BucketName)})
			return err != nil
		})
	}

	// Node 3 down: the server stays ready, mints, and the key works
	// through the nodes left.
	cluster.Nodes[2].Kill()
	if code, rep, err := readyz(r.URL()); code != http.StatusOK || err != nil {
		t.Errorf("readyz with node 3 down = %d %+v %v", code, rep, err)
	}
	mc2 := mint(t, r, token)
	key = keyOf(mc2)
	waitFor(t, 30*time.Second, "a key minted with node 3 down writes through node 4", func() bool {
		return put(at(3), "notes/b.md", "written while node 3 was down") == nil
	})
	if _, err := at(1).HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(mc.BucketName), Key: aws.String("notes/b.md")}); err != nil {
		t.Errorf("HEAD through node 2 with node 3 down: %v", err)
	}
}

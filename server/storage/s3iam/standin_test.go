package s3iam_test

import (
	"crypto/md5"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// standIn is a STAND-IN for an IAM + S3 service (Tigris or AWS): no real
// AWS or Tigris endpoint is reachable from where these tests run, so two
// httptest servers on 127.0.0.1 play the parts. The IAM one decodes the
// IAM Query API's form requests (Action=CreateUser, CreatePolicy, ...),
// checks them (signed by the admin key for service "iam" in the configured
// region, entities exist, IAM's deletion order, the policy document) and
// answers with the XML the SDK expects; the S3 one serves the few bucket
// and object requests the provider sends and enforces the attached
// policies' bucket resources for keys the IAM one minted. Signatures are
// not verified: only the access key id in the Authorization header is read.
// ListObjectsV2 is answered in key order with pagination (max-keys capped
// at 1,000, continuation-token, start-after); objects carry an MD5 ETag and
// a LastModified from a stand-in clock that moves one second per write.
type standIn struct {
	t         *testing.T
	adminKey  string
	region    string
	iamServer *httptest.Server
	s3Server  *httptest.Server

	mu       sync.Mutex
	calls    []string                        // IAM actions in order
	failNext map[string]int                  // IAM action -> how many calls fail
	users    map[string]*iamUser             // by name
	policies map[string]*iamPolicy           // by ARN
	keys     map[string]string               // access key id -> user
	buckets  map[string]map[string]*s3Object // bucket -> object name -> object
	clock    time.Time                       // LastModified of the last write
	lists    int                             // ListObjectsV2 requests answered
}

type s3Object struct {
	data     []byte
	modified time.Time
}

// putObjectLocked stores an object as a PUT would, without a request. Called
// with s.mu held or before the servers are used concurrently.
func (s *standIn) putObjectLocked(bucket, object string, data []byte) {
	s.clock = s.clock.Add(time.Second)
	s.buckets[bucket][object] = &s3Object{data: data, modified: s.clock}
}

// seed stores n objects named prefix0000000... in bucket without requests.
func (s *standIn) seed(bucket, prefix string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range n {
		s.putObjectLocked(bucket, fmt.Sprintf("%s%07d", prefix, i), []byte(fmt.Sprint(i)))
	}
}

// listCalls returns how many ListObjectsV2 requests were answered and
// resets the count.
func (s *standIn) listCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.lists
	s.lists = 0
	return n
}

type iamUser struct {
	attached map[string]bool // policy ARNs
	keys     map[string]bool
}

type iamPolicy struct {
	name     string
	doc      policyDoc
	attached int
}

type policyDoc struct {
	Version   string
	Statement []struct {
		Effect   string
		Action   []string
		Resource []string
	}
}

func newStandIn(t *testing.T, adminKey, region string) *standIn {
	t.Helper()
	s := &standIn{
		t: t, adminKey: adminKey, region: region,
		failNext: map[string]int{},
		users:    map[string]*iamUser{},
		policies: map[string]*iamPolicy{},
		keys:     map[string]string{},
		buckets:  map[string]map[string]*s3Object{},
		clock:    time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	s.iamServer = httptest.NewServer(http.HandlerFunc(s.serveIAM))
	s.s3Server = httptest.NewServer(http.HandlerFunc(s.serveS3))
	t.Cleanup(s.iamServer.Close)
	t.Cleanup(s.s3Server.Close)
	return s
}

// failOn makes the next n calls of an IAM action fail with an error the
// SDK does not retry.
func (s *standIn) failOn(action string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext[action] = n
}

func (s *standIn) takeCalls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calls
	s.calls = nil
	return c
}

// counts is how many users, policies and access keys exist.
func (s *standIn) counts() (users, policies, keys int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.users), len(s.policies), len(s.keys)
}

var credentialRe = regexp.MustCompile(`Credential=([^/]+)/\d{8}/([^/]+)/([^/]+)/aws4_request`)

// signer returns the access key, region and service of r's SigV4
// Authorization header.
func signer(r *http.Request) (key, region, service string) {
	m := credentialRe.FindStringSubmatch(r.Header.Get("Authorization"))
	if m == nil {
		return "", "", ""
	}
	return m[1], m[2], m[3]
}

const iamNS = "https://iam.amazonaws.com/doc/2010-05-08/"

func (s *standIn) iamError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<ErrorResponse xmlns="%s"><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>req-1</RequestId></ErrorResponse>`,
		iamNS, code, xmlEscape(msg))
}

func (s *standIn) iamOK(w http.ResponseWriter, action, result string) {
	w.Header().Set("Content-Type", "text/xml")
	if result != "" {
		result = "<" + action + "Result>" + result + "</" + action + "Result>"
	}
	fmt.Fprintf(w, `<%sResponse xmlns="%s">%s<ResponseMetadata><RequestId>req-1</RequestId></ResponseMetadata></%sResponse>`,
		action, iamNS, result, action)
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

func (s *standIn) serveIAM(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		s.iamError(w, 405, "InvalidAction", "POST only")
		return
	}
	if key, region, service := signer(r); key != s.adminKey || region != s.region || service != "iam" {
		s.t.Errorf("IAM request signed by %q for %q/%q, want the admin key for %q/iam", key, region, service, s.region)
		s.iamError(w, 403, "InvalidClientTokenId", "not the admin key")
		return
	}
	if err := r.ParseForm(); err != nil {
		s.iamError(w, 400, "MalformedInput", err.Error())
		return
	}
	f := r.PostForm
	action := f.Get("Action")
	if f.Get("Version") != "2010-05-08" {
		s.t.Errorf("IAM %s: Version = %q", action, f.Get("Version"))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, action)
	if s.failNext[action] > 0 {
		s.failNext[action]--
		s.iamError(w, 400, "InvalidInput", "injected failure of "+action)
		return
	}
	userName := f.Get("UserName")
	user := s.users[userName]
	noUser := func() { s.iamError(w, 404, "NoSuchEntity", "The user with name "+userName+" cannot be found.") }
	switch action {
	case "CreateUser":
		if !validName(userName) {
			s.t.Errorf("CreateUser: invalid user name %q", userName)
			s.iamError(w, 400, "ValidationError", "bad user name")
			return
		}
		if user != nil {
			s.iamError(w, 409, "EntityAlreadyExists", "user exists")
			return
		}
		s.users[userName] = &iamUser{attached: map[string]bool{}, keys: map[string]bool{}}
		s.iamOK(w, action, fmt.Sprintf(`<User><Path>/</Path><UserName>%s</UserName><UserId>AIDA%s</UserId><Arn>arn:aws:iam::123456789012:user/%s</Arn><CreateDate>2026-01-01T00:00:00Z</CreateDate></User>`,
			userName, rand.Text()[:12], userName))
	case "CreatePolicy":
		name := f.Get("PolicyName")
		arn := "arn:aws:iam::123456789012:policy/" + name
		if s.policies[arn] != nil {
			s.iamError(w, 409, "EntityAlreadyExists", "policy exists")
			return
		}
		var doc policyDoc
		if err := json.Unmarshal([]byte(f.Get("PolicyDocument")), &doc); err != nil {
			s.t.Errorf("CreatePolicy: policy document is not JSON: %v", err)
			s.iamError(w, 400, "MalformedPolicyDocument", err.Error())
			return
		}
		s.policies[arn] = &iamPolicy{name: name, doc: doc}
		s.iamOK(w, action, fmt.Sprintf(`<Policy><PolicyName>%s</PolicyName><PolicyId>ANPA%s</PolicyId><Arn>%s</Arn><Path>/</Path><DefaultVersionId>v1</DefaultVersionId><AttachmentCount>0</AttachmentCount><IsAttachable>true</IsAttachable></Policy>`,
			name, rand.Text()[:12], arn))
	case "AttachUserPolicy":
		pol := s.policies[f.Get("PolicyArn")]
		if user == nil {
			noUser()
			return
		}
		if pol == nil {
			s.iamError(w, 404, "NoSuchEntity", "policy not found")
			return
		}
		if !user.attached[f.Get("PolicyArn")] {
			user.attached[f.Get("PolicyArn")] = true
			pol.attached++
		}
		s.iamOK(w, action, "")
	case "CreateAccessKey":
		if user == nil {
			noUser()
			return
		}
		id := "AKIA" + rand.Text()[:16]
		s.keys[id] = userName
		user.keys[id] = true
		s.iamOK(w, action, fmt.Sprintf(`<AccessKey><UserName>%s</UserName><AccessKeyId>%s</AccessKeyId><Status>Active</Status><SecretAccessKey>%s</SecretAccessKey><CreateDate>2026-01-01T00:00:00Z</CreateDate></AccessKey>`,
			userName, id, rand.Text()))
	case "ListAccessKeys":
		if user == nil {
			noUser()
			return
		}
		var b strings.Builder
		ids := make([]string, 0, len(user.keys))
		for id := range user.keys {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			fmt.Fprintf(&b, `<member><UserName>%s</UserName><AccessKeyId>%s</AccessKeyId><Status>Active</Status></member>`, userName, id)
		}
		s.iamOK(w, action, fmt.Sprintf(`<UserName>%s</UserName><AccessKeyMetadata>%s</AccessKeyMetadata><IsTruncated>false</IsTruncated>`, userName, b.String()))
	case "DeleteAccessKey":
		id := f.Get("AccessKeyId")
		if user == nil || !user.keys[id] {
			s.iamError(w, 404, "NoSuchEntity", "The Access Key with id "+id+" cannot be found.")
			return
		}
		delete(user.keys, id)
		delete(s.keys, id)
		s.iamOK(w, action, "")
	case "DetachUserPolicy":
		arn := f.Get("PolicyArn")
		if user == nil || !user.attached[arn] {
			s.iamError(w, 404, "NoSuchEntity", "Policy "+arn+" was not found.")
			return
		}
		delete(user.attached, arn)
		s.policies[arn].attached--
		s.iamOK(w, action, "")
	case "DeletePolicy":
		arn := f.Get("PolicyArn")
		pol := s.policies[arn]
		if pol == nil {
			s.iamError(w, 404, "NoSuchEntity", "Policy "+arn+" was not found.")
			return
		}
		if pol.attached > 0 {
			s.iamError(w, 409, "DeleteConflict", "Cannot delete a policy attached to entities.")
			return
		}
		delete(s.policies, arn)
		s.iamOK(w, action, "")
	case "DeleteUser":
		if user == nil {
			noUser()
			return
		}
		if len(user.keys) > 0 || len(user.attached) > 0 {
			s.iamError(w, 409, "DeleteConflict", "Cannot delete entity, must delete access keys and detach policies first.")
			return
		}
		delete(s.users, userName)
		s.iamOK(w, action, "")
	default:
		s.t.Errorf("unexpected IAM action %q", action)
		s.iamError(w, 400, "InvalidAction", action)
	}
}

var nameRe = regexp.MustCompile(`^[\w+=,.@-]{1,64}$`)

func validName(n string) bool { return nameRe.MatchString(n) }

func s3Error(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message></Error>`, code, code)
}

// allowedBuckets is the buckets the attached policies of key's user grant,
// and whether key is known at all. Called with s.mu held.
func (s *standIn) allowedBuckets(key string) ([]string, bool) {
	userName, ok := s.keys[key]
	if !ok {
		return nil, false
	}
	var out []string
	for arn := range s.users[userName].attached {
		for _, st := range s.policies[arn].doc.Statement {
			for _, res := range st.Resource {
				if b, ok := strings.CutPrefix(res, "arn:aws:s3:::"); ok && !strings.Contains(b, "/") {
					out = append(out, b)
				}
			}
		}
	}
	return out, true
}

func (s *standIn) serveS3(w http.ResponseWriter, r *http.Request) {
	key, region, service := signer(r)
	if region != s.region || service != "s3" {
		s.t.Errorf("S3 %s %s signed for %q/%q, want %q/s3", r.Method, r.URL.Path, region, service, s.region)
	}
	bucket, object, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	s.mu.Lock()
	defer s.mu.Unlock()
	if key != s.adminKey {
		allowed, known := s.allowedBuckets(key)
		switch {
		case !known:
			s3Error(w, 403, "InvalidAccessKeyId")
			return
		case bucket == "" || !slices.Contains(allowed, bucket):
			s3Error(w, 403, "AccessDenied")
			return
		case object == "" && r.Method != http.MethodGet && r.Method != http.MethodHead:
			// a key may list its bucket, not create or delete it
			s3Error(w, 403, "AccessDenied")
			return
		}
	}
	objs, exists := s.buckets[bucket]
	switch {
	case bucket == "" && r.Method == http.MethodGet:
		var b strings.Builder
		names := make([]string, 0, len(s.buckets))
		for n := range s.buckets {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(&b, `<Bucket><Name>%s</Name><CreationDate>2026-01-01T00:00:00.000Z</CreationDate></Bucket>`, n)
		}
		w.Header().Set("Content-Type", "application/xml")
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><ListAllMyBucketsResult><Owner><ID>1</ID></Owner><Buckets>%s</Buckets></ListAllMyBucketsResult>`, b.String())
	case object == "" && r.Method == http.MethodPut:
		_, _ = io.Copy(io.Discard, r.Body)
		if exists {
			s3Error(w, 409, "BucketAlreadyOwnedByYou")
			return
		}
		s.buckets[bucket] = map[string]*s3Object{}
	case object == "" && r.Method == http.MethodHead:
		if !exists {
			w.WriteHeader(404)
		}
	case object == "" && r.Method == http.MethodDelete:
		switch {
		case !exists:
			s3Error(w, 404, "NoSuchBucket")
		case len(objs) > 0:
			s3Error(w, 409, "BucketNotEmpty")
		default:
			delete(s.buckets, bucket)
			w.WriteHeader(204)
		}
	case object == "" && r.Method == http.MethodGet && r.URL.Query().Get("list-type") == "2":
		if !exists {
			s3Error(w, 404, "NoSuchBucket")
			return
		}
		s.listObjectsV2(w, r, bucket, objs)
	case object != "" && r.Method == http.MethodPut && exists:
		data, _ := io.ReadAll(r.Body)
		s.putObjectLocked(bucket, object, data)
	case object != "" && r.Method == http.MethodGet && exists:
		o, ok := objs[object]
		if !ok {
			s3Error(w, 404, "NoSuchKey")
			return
		}
		data := o.data
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		_, _ = w.Write(data)
	case object != "" && r.Method == http.MethodDelete && exists:
		delete(objs, object)
		w.WriteHeader(204)
	default:
		s.t.Errorf("unexpected S3 request %s %s", r.Method, r.URL)
		s3Error(w, 400, "NotImplemented")
	}
}

// listObjectsV2 answers a ListObjectsV2 request for objs in key order, at
// most max-keys (1,000 at most) per page, resuming after the key the
// continuation token (or start-after) names. Called with s.mu held.
func (s *standIn) listObjectsV2(w http.ResponseWriter, r *http.Request, bucket string, objs map[string]*s3Object) {
	s.lists++
	q := r.URL.Query()
	limit := 1000
	if v := q.Get("max-keys"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			s3Error(w, 400, "InvalidArgument")
			return
		}
		limit = min(n, 1000)
	}
	after := q.Get("start-after")
	if tok := q.Get("continuation-token"); tok != "" {
		k, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil {
			s3Error(w, 400, "InvalidArgument")
			return
		}
		after = string(k)
	}
	names := make([]string, 0, len(objs))
	for k := range objs {
		if k > after {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	truncated := len(names) > limit
	if truncated {
		names = names[:limit]
	}
	var b strings.Builder
	for _, k := range names {
		o := objs[k]
		fmt.Fprintf(&b, `<Contents><Key>%s</Key><LastModified>%s</LastModified><ETag>&quot;%x&quot;</ETag><Size>%d</Size><StorageClass>STANDARD</StorageClass></Contents>`,
			xmlEscape(k), o.modified.Format("2006-01-02T15:04:05.000Z"), md5.Sum(o.data), len(o.data))
	}
	next := ""
	if truncated && len(names) > 0 {
		next = `<NextContinuationToken>` + base64.RawURLEncoding.EncodeToString([]byte(names[len(names)-1])) + `</NextContinuationToken>`
	}
	w.Header().Set("Content-Type", "application/xml")
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>%s</Name><KeyCount>%d</KeyCount><MaxKeys>%d</MaxKeys><IsTruncated>%t</IsTruncated>%s%s</ListBucketResult>`,
		bucket, len(names), limit, truncated, next, b.String())
}

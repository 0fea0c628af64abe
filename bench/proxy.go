package bench

import (
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// Request classes the proxy counts.
const (
	ClassList   = "LIST"   // GET on a bucket (ListObjects, ListObjectsV2, ...) or on the service
	ClassGet    = "GET"    // GET of an object
	ClassHead   = "HEAD"   // HEAD of an object or a bucket
	ClassPut    = "PUT"    // PUT: an upload, a server-side copy, a bucket
	ClassDelete = "DELETE" // DELETE of an object or a bucket
	ClassPost   = "POST"   // POST: multi-object delete, multipart
	ClassOther  = "OTHER"
)

// Classes are the request classes in the order the report lists them.
var Classes = []string{ClassList, ClassGet, ClassHead, ClassPut, ClassDelete, ClassPost, ClassOther}

// Counts are S3 requests by class.
type Counts map[string]int64

// Total is the number of requests.
func (c Counts) Total() int64 {
	var n int64
	for _, v := range c {
		n += v
	}
	return n
}

// Sub is c minus base, class by class.
func (c Counts) Sub(base Counts) Counts {
	d := Counts{}
	for k, v := range c {
		if v -= base[k]; v != 0 {
			d[k] = v
		}
	}
	return d
}

// String is "N (LIST a, HEAD b, ...)", the classes that occur.
func (c Counts) String() string {
	var parts []string
	for _, k := range Classes {
		if c[k] != 0 {
			parts = append(parts, k+" "+itoa(c[k]))
		}
	}
	if len(parts) == 0 {
		return "0"
	}
	return itoa(c.Total()) + " (" + strings.Join(parts, ", ") + ")"
}

// Classify names the class of an S3 request (path-style addressing).
func Classify(r *http.Request) string {
	bucket, object, _ := strings.Cut(strings.TrimLeft(r.URL.Path, "/"), "/")
	switch r.Method {
	case http.MethodGet:
		if object == "" || bucket == "" {
			if r.URL.Query().Has("uploads") || r.URL.Query().Has("location") || r.URL.Query().Has("versioning") {
				return ClassOther
			}
			return ClassList
		}
		return ClassGet
	case http.MethodHead:
		return ClassHead
	case http.MethodPut:
		return ClassPut
	case http.MethodDelete:
		return ClassDelete
	case http.MethodPost:
		return ClassPost
	}
	return ClassOther
}

// AccessKey is the access key a SigV4 request is signed with (from the
// Authorization header or a presigned URL's X-Amz-Credential), or "".
func AccessKey(r *http.Request) string {
	cred := r.URL.Query().Get("X-Amz-Credential")
	if a := r.Header.Get("Authorization"); a != "" {
		_, after, ok := strings.Cut(a, "Credential=")
		if !ok {
			return ""
		}
		cred = after
	}
	key, _, _ := strings.Cut(cred, "/")
	return key
}

// Proxy is a reverse proxy in front of an S3 endpoint that counts the
// requests through it by access key and class. It keeps the Host header
// the client signed, so SigV4 signatures stay valid.
type Proxy struct {
	ln     net.Listener
	srv    *http.Server
	target *url.URL

	mu     sync.Mutex
	counts map[string]Counts // access key -> class -> requests
}

// Listen opens the proxy's loopback listener; Serve forwards to target.
func Listen() (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return &Proxy{ln: ln, counts: map[string]Counts{}}, nil
}

// URL is the proxy's base URL, the S3 endpoint its clients are given.
func (p *Proxy) URL() string { return "http://" + p.ln.Addr().String() }

// Serve forwards every request to target (the real S3 endpoint) until
// Close.
func (p *Proxy) Serve(target string) error {
	u, err := url.Parse(target)
	if err != nil {
		return err
	}
	p.target = u
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(p.target)
			pr.Out.Host = pr.In.Host // the host the client signed
		},
		// Many small requests: keep connections to the endpoint.
		Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, DisableCompression: true},
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.count(AccessKey(r), Classify(r))
		rp.ServeHTTP(w, r)
	})}
	err = p.srv.Serve(p.ln)
	if err == http.ErrServerClosed {
		return nil
	}
	return err
}

// Close stops the proxy.
func (p *Proxy) Close() error {
	if p.srv != nil {
		return p.srv.Close()
	}
	return p.ln.Close()
}

func (p *Proxy) count(key, class string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.counts[key]
	if c == nil {
		c = Counts{}
		p.counts[key] = c
	}
	c[class]++
}

// Counts are the requests signed with key so far (a copy).
func (p *Proxy) Counts(key string) Counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.counts[key])
}

// Keys are the access keys seen so far, sorted.
func (p *Proxy) Keys() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Sorted(maps.Keys(p.counts))
}

package s3embed_test

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"
)

// scope is a SigV4 credential scope a test signs with, right or wrong.
type scope struct {
	date, region, service, terminator string
}

func goodScope(at time.Time) scope {
	return scope{at.UTC().Format("20060102"), "us-east-1", "s3", "aws4_request"}
}

func (s scope) String() string {
	return s.date + "/" + s.region + "/" + s.service + "/" + s.terminator
}

func hmacSHA(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

func signingKey(secret string, sc scope) []byte {
	k := hmacSHA([]byte("AWS4"+secret), sc.date)
	k = hmacSHA(k, sc.region)
	k = hmacSHA(k, sc.service)
	return hmacSHA(k, sc.terminator)
}

// signWithScope signs req (header auth, headers host, x-amz-content-sha256
// and x-amz-date) with whatever scope it is given, so that the signature
// itself is valid and only the scope can be wrong. It returns the seed
// signature.
func signWithScope(req *http.Request, access, secret string, sc scope, at time.Time, payload string) string {
	amzDate := at.UTC().Format("20060102T150405Z")
	req.Header.Set("X-Amz-Date", amzDate)
	req.Header.Set("X-Amz-Content-Sha256", payload)
	signed := []string{"host", "x-amz-content-sha256", "x-amz-date"}
	vals := map[string]string{"host": req.Host, "x-amz-content-sha256": payload, "x-amz-date": amzDate}
	for _, h := range []string{"x-amz-decoded-content-length", "content-encoding"} {
		if v := req.Header.Get(h); v != "" {
			signed = append(signed, h)
			vals[h] = v
		}
	}
	sort.Strings(signed)
	var ch strings.Builder
	for _, h := range signed {
		ch.WriteString(h + ":" + vals[h] + "\n")
	}
	canon := strings.Join([]string{req.Method, req.URL.EscapedPath(), strings.ReplaceAll(req.URL.Query().Encode(), "+", "%20"), ch.String(), strings.Join(signed, ";"), payload}, "\n")
	sum := sha256.Sum256([]byte(canon))
	sts := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + sc.String() + "\n" + hex.EncodeToString(sum[:])
	sig := hex.EncodeToString(hmacSHA(signingKey(secret, sc), sts))
	req.Header.Set("Authorization", fmt.Sprintf("AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s", access, sc, strings.Join(signed, ";"), sig))
	return sig
}

// presignWithScope returns a presigned GET URL for rawURL signed with sc.
func presignWithScope(rawURL, access, secret string, sc scope, at time.Time) string {
	u, _ := url.Parse(rawURL)
	amzDate := at.UTC().Format("20060102T150405Z")
	q := url.Values{}
	q.Set("X-Amz-Algorithm", "AWS4-HMAC-SHA256")
	q.Set("X-Amz-Credential", access+"/"+sc.String())
	q.Set("X-Amz-Date", amzDate)
	q.Set("X-Amz-Expires", "900")
	q.Set("X-Amz-SignedHeaders", "host")
	canon := strings.Join([]string{http.MethodGet, u.EscapedPath(), strings.ReplaceAll(q.Encode(), "+", "%20"), "host:" + u.Host + "\n", "host", "UNSIGNED-PAYLOAD"}, "\n")
	sum := sha256.Sum256([]byte(canon))
	sts := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + sc.String() + "\n" + hex.EncodeToString(sum[:])
	q.Set("X-Amz-Signature", hex.EncodeToString(hmacSHA(signingKey(secret, sc), sts)))
	u.RawQuery = q.Encode()
	return u.String()
}

// s3Err is an S3 error body.
type s3Err struct {
	Code      string `xml:"Code"`
	Message   string `xml:"Message"`
	RequestID string `xml:"RequestId"`
}

func parseErr(body []byte) s3Err {
	var e s3Err
	_ = xml.Unmarshal(body, &e)
	return e
}

// answer is a response read off a raw connection.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// rawPut sends req's line and headers (plus Content-Length: declared and
// any extra header lines) on a fresh connection, then the body bytes
// given, then, if closeWrite, half-closes; it returns the first answer.
// With expect100, it sends "Expect: 100-continue" and no body, and
// returns whatever the server answers first (a 100 Continue means the
// server went on to read the body).
func rawPut(t *testing.T, req *http.Request, declared int64, body []byte, closeWrite, expect100 bool) answer {
	t.Helper()
	conn, err := net.Dial("tcp", req.URL.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n", req.Method, req.URL.RequestURI(), req.Host, declared)
	for k, vs := range req.Header {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	if expect100 {
		b.WriteString("Expect: 100-continue\r\n")
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	if !expect100 {
		if _, err := conn.Write(body); err != nil {
			t.Fatal(err)
		}
		if closeWrite {
			_ = conn.(*net.TCPConn).CloseWrite()
		}
	}
	br := bufio.NewReader(conn)
	if expect100 {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the first answer: %v", err)
		}
		if strings.Contains(line, " 100 ") {
			return answer{status: http.StatusContinue}
		}
		br = bufio.NewReader(io.MultiReader(strings.NewReader(line), br))
	}
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: data}
}

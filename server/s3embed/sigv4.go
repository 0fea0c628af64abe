package s3embed

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rclone/gofakes3"
	"github.com/rclone/gofakes3/signature"
)

// What gofakes3's signature check leaves out, done here: the credential
// scope is compared with the request (its date with the day the request
// was signed, its region with the endpoint's, service s3, terminator
// aws4_request), and the chunks of a STREAMING-AWS4-HMAC-SHA256-PAYLOAD
// body are verified one by one against the chain of signatures that
// starts at the seed (the request's own signature), so a captured upload
// cannot be sent again with another body.

const (
	sigV4Algorithm   = "AWS4-HMAC-SHA256"
	chunkAlgorithm   = "AWS4-HMAC-SHA256-PAYLOAD"
	iso8601Basic     = "20060102T150405Z"
	scopeDateLayout  = "20060102"
	scopeService     = "s3"
	scopeTerminator  = "aws4_request"
	streamingPayload = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
)

// sigV4Auth is what a SigV4 request says about its signing, parsed from
// the Authorization header or, presigned, from the query.
type sigV4Auth struct {
	presigned                         bool
	date, region, service, terminator string // the credential scope
	signature                         string
	// signedAt is when the request says it was signed: X-Amz-Date
	// (query or header), else the Date header. Zero if none parses.
	signedAt time.Time
}

// parseSigV4 reads the credential scope, signature and signing time of r.
// ok is false when r does not carry them in a shape this check can read;
// gofakes3's verification then refuses it with its own error.
func parseSigV4(r *http.Request) (a sigV4Auth, ok bool) {
	var cred, date string
	if auth := r.Header.Get("Authorization"); auth != "" {
		rest, found := strings.CutPrefix(auth, sigV4Algorithm)
		if !found {
			return a, false
		}
		for field := range strings.SplitSeq(rest, ",") {
			k, v, _ := strings.Cut(strings.TrimSpace(field), "=")
			switch k {
			case "Credential":
				cred = v
			case "Signature":
				a.signature = v
			}
		}
		date = r.Header.Get("X-Amz-Date")
	} else {
		q := r.URL.Query()
		if q.Get("X-Amz-Signature") == "" {
			return a, false
		}
		a.presigned = true
		cred, a.signature, date = q.Get("X-Amz-Credential"), q.Get("X-Amz-Signature"), q.Get("X-Amz-Date")
	}
	// The access key may itself contain '/': the scope is the last four.
	parts := strings.Split(cred, "/")
	if len(parts) < 5 {
		return a, false
	}
	scope := parts[len(parts)-4:]
	a.date, a.region, a.service, a.terminator = scope[0], scope[1], scope[2], scope[3]
	if date != "" {
		a.signedAt, _ = time.Parse(iso8601Basic, date)
	} else if !a.presigned {
		a.signedAt, _ = http.ParseTime(r.Header.Get("Date"))
	}
	return a, true
}

// scope is the credential scope string of the string to sign.
func (a sigV4Auth) scope() string {
	return a.date + "/" + a.region + "/" + a.service + "/" + a.terminator
}

// checkScope refuses a request whose credential scope does not belong to
// this request at this endpoint, with the codes AWS answers:
// AuthorizationHeaderMalformed for a signed header,
// AuthorizationQueryParametersError for a presigned URL.
func checkScope(a sigV4Auth, region string) *signature.APIError {
	refuse := func(header, query string) *signature.APIError {
		if a.presigned {
			return &signature.APIError{Code: "AuthorizationQueryParametersError", Description: query, HTTPStatusCode: http.StatusBadRequest}
		}
		return &signature.APIError{Code: "AuthorizationHeaderMalformed", Description: "The authorization header is malformed; " + header, HTTPStatusCode: http.StatusBadRequest}
	}
	day := ""
	if !a.signedAt.IsZero() {
		day = a.signedAt.UTC().Format(scopeDateLayout)
	}
	switch {
	case day != "" && a.date != day:
		return refuse("Invalid credential date. Date is not the same as X-Amz-Date.",
			fmt.Sprintf("Invalid credential date %q. This date is not the same as X-Amz-Date: %q.", a.date, day))
	case a.region != region:
		return refuse(fmt.Sprintf("the region %q is wrong; expecting %q", a.region, region),
			fmt.Sprintf("Error parsing the X-Amz-Credential parameter; the region %q is wrong; expecting %q", a.region, region))
	case a.service != scopeService:
		return refuse(fmt.Sprintf("incorrect service %q. This endpoint belongs to %q.", a.service, scopeService),
			fmt.Sprintf("Error parsing the X-Amz-Credential parameter; incorrect service %q. This endpoint belongs to %q.", a.service, scopeService))
	case a.terminator != scopeTerminator:
		return refuse(fmt.Sprintf("incorrect terminal %q. This endpoint uses %q.", a.terminator, scopeTerminator),
			fmt.Sprintf("Error parsing the X-Amz-Credential parameter; incorrect terminal %q. This endpoint uses %q.", a.terminator, scopeTerminator))
	}
	return nil
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// signingKey derives the SigV4 signing key of secret for a's scope.
func (a sigV4Auth) signingKey(secret string) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), a.date)
	k = hmacSHA256(k, a.region)
	k = hmacSHA256(k, a.service)
	return hmacSHA256(k, a.terminator)
}

// Refusals of a streaming body, answered in place of whatever gofakes3
// makes of the failed read (see requestFault).
var (
	errChunkSignature = signature.APIError{Code: "SignatureDoesNotMatch", Description: "The request signature we calculated does not match the signature you provided. Check your key and signing method.", HTTPStatusCode: http.StatusForbidden}
	errChunkFraming   = signature.APIError{Code: "InvalidRequest", Description: "The aws-chunked body is malformed or does not match x-amz-decoded-content-length.", HTTPStatusCode: http.StatusBadRequest}
	errIncompleteBody = signature.APIError{Code: "IncompleteBody", Description: "You did not provide the number of bytes specified by the Content-Length HTTP header.", HTTPStatusCode: http.StatusBadRequest}
	errNoDecodedLen   = signature.APIError{Code: "MissingContentLength", Description: "A streaming upload must give x-amz-decoded-content-length.", HTTPStatusCode: http.StatusLengthRequired}
)

// requestFault is where a request body's reader records why it refused
// the body, so the answer is that refusal (and its status) rather than
// what the S3 library makes of a failed read. The body is read on the
// handler's goroutine, which also writes the answer.
type requestFault struct{ err *signature.APIError }

func (f *requestFault) set(e signature.APIError) {
	if f.err == nil {
		f.err = &e
	}
}

// chunkReader decodes a STREAMING-AWS4-HMAC-SHA256-PAYLOAD body:
//
//	hex(size);chunk-signature=SIG\r\n DATA \r\n ... 0;chunk-signature=SIG\r\n\r\n
//
// checking each chunk's signature, chained from the seed signature,
// before it hands out the chunk's last byte; the final empty chunk is
// checked before the last byte of the object. So a reader that reaches
// EOF has read exactly the signed data; a chunk altered, dropped, reordered
// or added fails the read (and the answer is the fault recorded).
type chunkReader struct {
	in     *bufio.Reader
	body   io.Closer
	key    []byte
	prefix string // the string to sign up to the previous signature
	prev   string // the previous chunk's signature (the seed's first)
	left   int64  // data bytes still expected after the current chunk's
	remain int64  // data bytes left in the current chunk
	sig    string // the current chunk's signature
	h      hash.Hash
	done   bool
	err    error
	fault  *requestFault
}

// maxChunkHeader bounds a chunk header line: 16 hex digits, the
// extension and 64 hex digits of signature fit with room to spare.
const maxChunkHeader = 256

func newChunkReader(body io.ReadCloser, a sigV4Auth, secret string, decodedLen int64, fault *requestFault) *chunkReader {
	return &chunkReader{
		in:     bufio.NewReaderSize(body, 64<<10),
		body:   body,
		key:    a.signingKey(secret),
		prefix: chunkAlgorithm + "\n" + a.signedAt.UTC().Format(iso8601Basic) + "\n" + a.scope() + "\n",
		prev:   a.signature,
		left:   decodedLen,
		h:      sha256.New(),
		fault:  fault,
	}
}

var (
	errChunkSig    = gofakes3.ErrorMessage(gofakes3.ErrBadRequest, "chunk signature does not match")
	errChunkFormat = gofakes3.ErrorMessage(gofakes3.ErrBadRequest, "malformed aws-chunked body")
)

func (c *chunkReader) fail(apiErr signature.APIError, err error) error {
	c.fault.set(apiErr)
	c.err = err
	return err
}

// readErr turns a read error of the raw body into the refusal: a body
// that ends early is incomplete.
func (c *chunkReader) readErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return c.fail(errIncompleteBody, gofakes3.ErrIncompleteBody)
	}
	c.err = err
	return err
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.done {
		return 0, io.EOF
	}
	if c.remain == 0 {
		// Between chunks: only when data is still expected (else done).
		if err := c.header(); err != nil {
			return 0, err
		}
		if c.done {
			return 0, io.EOF // an empty body: the final chunk came first
		}
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, err := c.in.Read(p[:min(int64(len(p)), c.remain)])
	c.h.Write(p[:n])
	c.remain -= int64(n)
	if c.remain > 0 {
		if err != nil {
			return 0, c.readErr(err)
		}
		return n, nil
	}
	// The chunk's last bytes are in p: hand them out only if it verifies.
	if err := c.endChunk(); err != nil {
		return 0, err
	}
	if c.left == 0 {
		if err := c.header(); err != nil {
			return 0, err
		}
		if c.remain != 0 {
			return 0, c.fail(errChunkFraming, errChunkFormat) // data beyond the decoded length
		}
	}
	return n, nil
}

// header reads and checks the next chunk header. A final (empty) chunk
// is verified at once and ends the body.
func (c *chunkReader) header() error {
	line, err := c.in.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return c.fail(errChunkFraming, errChunkFormat)
		}
		return c.readErr(err)
	}
	size, sig, ok := parseChunkHeader(line)
	if !ok {
		return c.fail(errChunkFraming, errChunkFormat)
	}
	if size > c.left {
		return c.fail(errChunkFraming, errChunkFormat)
	}
	c.remain, c.sig = size, sig
	c.h.Reset()
	if size > 0 {
		c.left -= size
		return nil
	}
	if c.left != 0 {
		return c.fail(errIncompleteBody, gofakes3.ErrIncompleteBody)
	}
	if err := c.verify(); err != nil {
		return err
	}
	// The final chunk's empty data is followed by CRLF; tolerate a body
	// that stops right after the header.
	if b, err := c.in.Peek(2); err == nil && string(b) == "\r\n" {
		_, _ = c.in.Discard(2)
	}
	c.done = true
	return nil
}

// endChunk reads the CRLF after a chunk's data and verifies the chunk.
func (c *chunkReader) endChunk() error {
	var crlf [2]byte
	if _, err := io.ReadFull(c.in, crlf[:]); err != nil {
		return c.readErr(err)
	}
	if string(crlf[:]) != "\r\n" {
		return c.fail(errChunkFraming, errChunkFormat)
	}
	return c.verify()
}

// verify checks the current chunk's signature (over the data hashed so
// far) and moves the chain on.
func (c *chunkReader) verify() error {
	sts := c.prefix + c.prev + "\n" + emptySHA256 + "\n" + hex.EncodeToString(c.h.Sum(nil))
	want := hex.EncodeToString(hmacSHA256(c.key, sts))
	if subtle.ConstantTimeCompare([]byte(want), []byte(c.sig)) != 1 {
		return c.fail(errChunkSignature, errChunkSig)
	}
	c.prev = c.sig
	return nil
}

func (c *chunkReader) Close() error { return c.body.Close() }

// parseChunkHeader parses "hex-size;chunk-signature=64-hex\r\n" strictly.
func parseChunkHeader(line []byte) (size int64, sig string, ok bool) {
	if len(line) > maxChunkHeader {
		return 0, "", false
	}
	line, found := bytes.CutSuffix(line, []byte("\r\n"))
	if !found {
		return 0, "", false
	}
	hexSize, rest, found := bytes.Cut(line, []byte(";chunk-signature="))
	if !found || len(hexSize) == 0 || len(hexSize) > 15 || len(rest) != sha256.Size*2 {
		return 0, "", false
	}
	for _, b := range hexSize {
		if !isHex(b) {
			return 0, "", false
		}
	}
	for _, b := range rest {
		if !isHex(b) {
			return 0, "", false
		}
	}
	size, err := strconv.ParseInt(string(hexSize), 16, 64)
	if err != nil {
		return 0, "", false
	}
	return size, strings.ToLower(string(rest)), true
}

func isHex(b byte) bool {
	return '0' <= b && b <= '9' || 'a' <= b && b <= 'f' || 'A' <= b && b <= 'F'
}

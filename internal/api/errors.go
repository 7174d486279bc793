package api

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/slipwayhq/slipway/internal/deploy"
	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/store"
)

// Error is the one error type rendered at the HTTP edge. Code is stable
// and meant for programs; Message is safe to show to users.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

// Stable error codes.
const (
	CodeBadRequest    = "bad_request"
	CodeUnauthorized  = "unauthorized"
	CodeNotFound      = "not_found"
	CodeConflict      = "conflict"
	CodeTooLarge      = "payload_too_large"
	CodeInternal      = "internal"
	CodeInvalidSource = "invalid_source"
)

func errBadRequest(msg string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: msg}
}

// envelope is the JSON shape of every error answer:
//
//	{"error": {"code": "not_found", "message": "project \"x\" not found"}}
type envelope struct {
	Error *Error `json:"error"`
}

// writeError renders err in the error envelope, mapping domain errors to
// their status and code; anything unexpected is a 500 whose detail stays in
// the server's log.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	switch {
	case errors.As(err, &e):
	case errors.Is(err, project.ErrInvalid):
		e = &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: err.Error()}
	case errors.Is(err, store.ErrNotFound):
		e = &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: err.Error()}
	case errors.Is(err, store.ErrExists), errors.Is(err, store.ErrConflict):
		e = &Error{Status: http.StatusConflict, Code: CodeConflict, Message: err.Error()}
	case errors.Is(err, deploy.ErrSourceTooLarge):
		e = &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge, Message: err.Error()}
	default:
		s.log.Error("api", "method", r.Method, "path", r.URL.Path, "err", err)
		e = &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "internal server error"}
	}
	writeJSON(w, e.Status, envelope{Error: e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

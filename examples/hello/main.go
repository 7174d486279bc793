// Command hello is Slipway's smallest example app: it answers every request
// with a line naming its host and its deployment, and logs each request.
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
	"time"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "3000"
	}
	host, _ := os.Hostname()
	deployment := os.Getenv("SLIPWAY_DEPLOYMENT_ID")
	if deployment == "" {
		deployment = "(none)"
	}
	log.SetFlags(0)
	log.SetOutput(os.Stdout)

	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "hello from %s, deployment %s\n", host, deployment)
		log.Printf("%s %s %s %s", r.Method, r.URL.Path, r.RemoteAddr, time.Since(start))
	})
	log.Printf("hello: listening on :%s (host %s, deployment %s)", port, host, deployment)
	if err := http.ListenAndServe(":"+port, nil); err != nil {
		log.Fatal(err)
	}
}

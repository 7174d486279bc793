// Command app is the integration tests' app: it answers on $PORT, says
// which deployment and process it is, and can be told to crash or to
// allocate memory.
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
	"strconv"
	"time"
)

func main() {
	started := time.Now().UnixNano()
	port := os.Getenv("PORT")
	if port == "" {
		port = "3000"
	}
	log.SetFlags(0)
	log.SetOutput(os.Stdout)
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "app %s started %d\n", os.Getenv("SLIPWAY_DEPLOYMENT_ID"), started)
	})
	http.HandleFunc("/env", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, os.Getenv(r.URL.Query().Get("name")))
	})
	http.HandleFunc("/crash", func(w http.ResponseWriter, r *http.Request) {
		log.Printf("crashing on request")
		os.Exit(3)
	})
	var held [][]byte
	http.HandleFunc("/alloc", func(w http.ResponseWriter, r *http.Request) {
		mb, _ := strconv.Atoi(r.URL.Query().Get("mb"))
		for range mb {
			b := make([]byte, 1<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			held = append(held, b)
		}
		fmt.Fprintln(w, "allocated")
	})
	http.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		fmt.Fprintln(w, "slow done")
	})
	log.Printf("listening on :%s", port)
	log.Fatal(http.ListenAndServe(":"+port, nil))
}

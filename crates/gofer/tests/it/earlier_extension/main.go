// An extension written the way extensions of the earlier Gofer were, with nothing of this Gofer's: Go's standard
// library and the documented protocol only. It reads GOFER_EXTENSION_SYSTEM_*, adds the scheme to GOFER_HOST itself
// (as the earlier SDKs did), checks the bearer secret, restores its subscriptions from
// GET /api/extensions/{id}/subscriptions before it listens (reading subscription_id and status, the earlier fields)
// and exits if that fails, as the earlier interval, cron and github extensions do, and starts a run for every
// subscription it gets or restores, passing ORIGIN (subscribe or restore) and the `message` setting.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"
	"sync"
)

var (
	id     = os.Getenv("GOFER_EXTENSION_SYSTEM_ID")
	secret = os.Getenv("GOFER_EXTENSION_SYSTEM_SECRET")
	host   = "http://" + os.Getenv("GOFER_EXTENSION_SYSTEM_GOFER_HOST")
	mu     sync.Mutex
	active = map[string]string{} // "ns/pipeline/label" -> message
)

type subscribeRequest struct {
	NamespaceID                string            `json:"namespace_id"`
	PipelineID                 string            `json:"pipeline_id"`
	PipelineSubscriptionID     string            `json:"pipeline_subscription_id"`
	PipelineSubscriptionParams map[string]string `json:"pipeline_subscription_params"`
}

func startRun(namespace, pipeline, origin, message string) error {
	body, _ := json.Marshal(map[string]interface{}{
		"variables": map[string]string{"ORIGIN": origin, "MESSAGE": message},
	})
	url := fmt.Sprintf("%s/api/namespaces/%s/pipelines/%s/runs", host, namespace, pipeline)
	request, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	request.Header.Set("Authorization", "Bearer "+secret)
	request.Header.Set("Content-Type", "application/json")
	response, err := http.DefaultClient.Do(request)
	if err != nil {
		return err
	}
	defer response.Body.Close()
	if response.StatusCode != 201 {
		return fmt.Errorf("start run: %s", response.Status)
	}
	return nil
}

func restore() {
	request, _ := http.NewRequest("GET", fmt.Sprintf("%s/api/extensions/%s/subscriptions", host, id), nil)
	request.Header.Set("Authorization", "Bearer "+secret)
	response, err := http.DefaultClient.Do(request)
	if err != nil {
		log.Fatalf("could not list subscriptions: %v", err)
	}
	defer response.Body.Close()
	if response.StatusCode != 200 {
		log.Fatalf("could not list subscriptions: %s", response.Status)
	}
	var listed struct {
		Subscriptions []struct {
			NamespaceID    string            `json:"namespace_id"`
			PipelineID     string            `json:"pipeline_id"`
			SubscriptionID string            `json:"subscription_id"`
			Settings       map[string]string `json:"settings"`
			Status         string            `json:"status"`
		} `json:"subscriptions"`
	}
	if err := json.NewDecoder(response.Body).Decode(&listed); err != nil {
		log.Fatalf("could not read subscriptions: %v", err)
	}
	for _, s := range listed.Subscriptions {
		if s.Status != "active" || s.SubscriptionID == "" {
			continue
		}
		mu.Lock()
		active[s.NamespaceID+"/"+s.PipelineID+"/"+s.SubscriptionID] = s.Settings["message"]
		mu.Unlock()
		if err := startRun(s.NamespaceID, s.PipelineID, "restore", s.Settings["message"]); err != nil {
			log.Printf("restore %s: %v", s.SubscriptionID, err)
		}
	}
}

func authorized(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+secret {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		next(w, r)
	}
}

func answer(w http.ResponseWriter, status int, value interface{}) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(value)
}

func main() {
	bind := os.Getenv("GOFER_EXTENSION_SYSTEM_BIND_ADDRESS")
	if bind == "" {
		bind = "0.0.0.0:8082"
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/health", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("/api/info", authorized(func(w http.ResponseWriter, r *http.Request) {
		answer(w, 200, map[string]interface{}{
			"extension_id": id,
			"documentation": map[string]interface{}{
				"body":                         "Starts a run when subscribed and when it restores a subscription.",
				"config_params":                []interface{}{},
				"pipeline_subscription_params": []map[string]interface{}{{"key": "message", "required": true, "documentation": "Passed as MESSAGE."}},
			},
		})
	}))
	mux.HandleFunc("/api/debug", authorized(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		answer(w, 200, map[string]string{"info": fmt.Sprintf("%d active subscription(s)", len(active))})
	}))
	mux.HandleFunc("/api/subscribe", authorized(func(w http.ResponseWriter, r *http.Request) {
		var s subscribeRequest
		if err := json.NewDecoder(r.Body).Decode(&s); err != nil {
			answer(w, 400, map[string]string{"message": err.Error()})
			return
		}
		key := s.NamespaceID + "/" + s.PipelineID + "/" + s.PipelineSubscriptionID
		if r.Method == "DELETE" {
			mu.Lock()
			delete(active, key)
			mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
			return
		}
		message, ok := s.PipelineSubscriptionParams["message"]
		if !ok {
			answer(w, 400, map[string]string{"message": "the setting `message` is required"})
			return
		}
		mu.Lock()
		active[key] = message
		mu.Unlock()
		go func() {
			if err := startRun(s.NamespaceID, s.PipelineID, "subscribe", message); err != nil {
				log.Printf("subscribe %s: %v", key, err)
			}
		}()
		w.WriteHeader(http.StatusCreated)
	}))
	mux.HandleFunc("/api/shutdown", authorized(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
		go os.Exit(0)
	}))
	mux.HandleFunc("/api/external-event", authorized(func(w http.ResponseWriter, r *http.Request) {
		answer(w, 200, map[string]string{"message": "ignored"})
	}))
	restore()
	log.Fatal(http.ListenAndServe(bind, mux))
}

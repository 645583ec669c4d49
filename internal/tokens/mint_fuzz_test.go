package tokens

import (
	"testing"

	"github.com/direktiv/direktiv-authz/internal/apierror"
)

func FuzzParseMintRequest(f *testing.F) {
	for _, s := range []string{
		`{"description":"created by api","policies":["deleteNamespace","eventsManage"],"expires":"P1Y"}`, // the mint of Direktiv's documentation
		`{"policies":["workflowView"]}`,
		`{"description":"x","policies":["a","b"],"expires":"PT1H"}`,
		`{"policies":null}`, `{"policies":[]}`, `[]`, `null`, `{}`, ``, `{"policies":["x"]} x`,
		`{"policies":[1]}`, `{"expires":5,"policies":["a"]}`, `{"policies":["a"],"extra":1}`,
		"{\"description\":\"\xff\",\"policies\":[\"a\"]}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := parseMintRequest(body)
		if err != nil {
			if apierror.As(err).Code != apierror.BadRequest {
				t.Fatalf("error %v is not a bad request", err)
			}
			return
		}
		if req.Policies == nil || len(*req.Policies) == 0 || len(*req.Policies) > maxPolicies || len(req.Description) > maxDescription {
			t.Fatalf("accepted an invalid request: %+v", req)
		}
	})
}

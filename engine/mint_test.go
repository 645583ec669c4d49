package engine

import (
	"context"
	"reflect"
	"testing"
)

func TestMint(t *testing.T) {
	e := MustNew(t, Options{})
	admin := Caller{Admin: true}
	minter := Caller{Namespace: "ns1", Policies: []string{"permissionsManage", "workflowManage", "eventsSend"}}
	const valid = "[deleteNamespace, eventsManage, eventsSend, eventsView, explorerManage, explorerView, instancesManage, instancesView, nsconfigManage, nsconfigView, opaManage, opaView, permissionsManage, permissionsView, registriesManage, registriesView, secretsManage, secretsView, servicesManage, servicesView, variablesManage, variablesView, workflowExecute, workflowManage, workflowStore, workflowView]"
	none := []string{}

	tests := []struct {
		name string
		in   MintInput
		want MintDecision
	}{
		{
			name: "admin mints anything anywhere",
			in:   MintInput{Caller: admin, Namespace: "other", Requested: []string{"eventsManage", "deleteNamespace", "eventsManage"}},
			want: MintDecision{Allow: true, Granted: []string{"deleteNamespace", "eventsManage"}, Dropped: none, Unknown: none},
		},
		{
			name: "minter gets what it holds, inherited included",
			in:   MintInput{Caller: minter, Namespace: "ns1", Requested: []string{"workflowView", "permissionsView", "eventsSend"}},
			want: MintDecision{Allow: true, Granted: []string{"eventsSend", "permissionsView", "workflowView"}, Dropped: none, Unknown: none},
		},
		{
			name: "policies the minter lacks are dropped",
			in:   MintInput{Caller: minter, Namespace: "ns1", Requested: []string{"deleteNamespace", "workflowManage", "secretsView"}},
			want: MintDecision{Allow: true, Granted: []string{"workflowManage"}, Dropped: []string{"deleteNamespace", "secretsView"}, Unknown: none},
		},
		{
			name: "another namespace",
			in:   MintInput{Caller: minter, Namespace: "ns2", Requested: []string{"workflowView"}},
			want: MintDecision{Code: CodeForbidden, Reason: `this token belongs to namespace "ns1" and can mint tokens only there, not in namespace "ns2"`, Granted: none, Dropped: none, Unknown: none},
		},
		{
			name: "without permissionsManage",
			in:   MintInput{Caller: Caller{Namespace: "ns1", Policies: []string{"permissionsView"}}, Namespace: "ns1", Requested: []string{"permissionsView"}},
			want: MintDecision{Code: CodeForbidden, Reason: "minting a token needs the permissionsManage policy, which this token does not hold (it holds [permissionsView])", Granted: none, Dropped: none, Unknown: none},
		},
		{
			name: "forbidden before bad request",
			in:   MintInput{Caller: Caller{Namespace: "ns1"}, Namespace: "ns1", Requested: []string{"nope"}},
			want: MintDecision{Code: CodeForbidden, Reason: "minting a token needs the permissionsManage policy, which this token does not hold (it holds none)", Granted: none, Dropped: none, Unknown: none},
		},
		{
			name: "nothing requested",
			in:   MintInput{Caller: minter, Namespace: "ns1"},
			want: MintDecision{Code: CodeBadRequest, Reason: "the request names no policies; ask for at least one of: " + valid, Granted: none, Dropped: none, Unknown: none},
		},
		{
			name: "unknown names",
			in:   MintInput{Caller: admin, Namespace: "ns1", Requested: []string{"workflowView", "WorkflowView", "fooManage"}},
			want: MintDecision{Code: CodeBadRequest, Reason: "unknown policies [WorkflowView, fooManage]; valid policies are: " + valid, Granted: none, Dropped: none, Unknown: []string{"WorkflowView", "fooManage"}},
		},
		{
			name: "none held",
			in:   MintInput{Caller: minter, Namespace: "ns1", Requested: []string{"secretsManage", "opaView"}},
			want: MintDecision{Code: CodeForbidden, Reason: "none of the requested policies [opaView, secretsManage] are held by the caller, which holds [eventsSend, permissionsManage, permissionsView, workflowManage, workflowView]", Granted: none, Dropped: []string{"opaView", "secretsManage"}, Unknown: none},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := e.Mint(context.Background(), tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Mint(%+v)\n got %#v\nwant %#v", tt.in, got, tt.want)
			}
		})
	}
}

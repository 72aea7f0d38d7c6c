// Package contract holds the client (internal/csm) and the emulator
// (internal/csmemu) to HPE's own API definitions of each CSM release, read
// from ../shared/csm-specs (beside the checkout; never copied into the
// project). Its tests run the client's calls against the emulator serving
// one release, record every request and answer, and validate each against
// that release's OpenAPI/Swagger definitions with kin-openapi, except the
// known places where HPE's service and its definition differ, each named
// once in the test with its reason.
package contract

// iCure's guide "Subscribing to iCure events", run by an unchanged @icure/cardinal-sdk (JavaScript, Node.js)
// against a server: the same steps and the same result as guide.py, the Python client's.
//
//     node guide.mjs '{"url": ..., "login": ..., "password": ..., "storage": <key store directory>, "sdk": ...}'
//
// Run by tests/integration/test_icure_cardinal_js.py; `sdk` is the directory of the npm install it makes, which
// holds node_modules/@icure/cardinal-sdk (this file imports only cardinal and Node's own modules). Like connect.py,
// the client encrypts, besides cardinal's default encrypted fields, those the server requires encrypted
// (`icureEncryptedFields` of `GET /rest/v1/crypto/configuration`), as an application does on a server that
// requires encryption (docs/icure.md). It prints one JSON object, on its last line, saying what it saw:
//
// - `encrypted_fields`: the encrypted fields the client was configured with, by entity;
// - `patient`: the patient as the client read it back, decrypted (John Snow, 'Winter is coming');
// - `connected`: the subscription's lifecycle events before the first write that counts;
// - `probes`: how many probe services were written until one came back as an event. The client reports
//   Connected before its subscription frame has reached the server (the protocol has no acknowledgement): a
//   probe's event proves the subscription is live on the server, so that what follows cannot be lost to that;
// - `events`: every service event after the probes, decrypted: the untagged service must bring none, the tagged
//   one exactly one, 'Hello world';
// - `modified_events`, `modified_contact`: the service events after the client modifies the tagged contact
//   (`modifyContact`), its service's content changed to 'Hello again', decrypted (exactly one, that service's),
//   and the contact's new rev and its services' contents as the server answered;
// - `matched`, `read_back`: the services the subscription's filter selects, as a client re-reads them after a
//   reconnect, and the two services read back by id, decrypted;
// - `close_reason`: the subscription's close reason after `close()`.

import { randomUUID } from "node:crypto";
import { createRequire } from "node:module";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const config = JSON.parse(process.argv[2]);
const cardinal = createRequire(join(config.sdk, "package.json")).resolve("@icure/cardinal-sdk");
const {
  AuthenticationMethod,
  CardinalSdk,
  CodeStub,
  DecryptedContact,
  DecryptedContent,
  DecryptedPatient,
  DecryptedService,
  EntitySubscriptionEvent,
  ServiceFilters,
  StorageFacade,
} = await import(pathToFileURL(cardinal).href);

const PROBE_MS = 6000;
const MAX_PROBES = 5;
const QUIET_MS = 3000;
const NOTIFICATION = EntitySubscriptionEvent.EntityNotification;

// Cardinal's default encrypted fields (1.0.0-RC.7) of the entities the guide writes. The JavaScript client does
// not export them: a list given in `SdkOptions.encryptedFields` replaces its entity's default, so the defaults are
// spelled here and the server's fields added to them.
const DEFAULT_ENCRYPTED_FIELDS = {
  patient: ["note", "notes[].markdown"],
  contact: ["descr", "notes[].markdown"],
  service: ["notes[].markdown"],
};

// `defaults` and each required field they do not name already (cardinal refuses a field named twice, as
// `partnerships` beside a default `partnerships[].*`).
function adding(defaults, required) {
  const named = new Set(defaults.map((path) => path.split(/[.[]/, 1)[0]));
  return [...defaults, ...required.filter((name) => !named.has(name))];
}

// Cardinal's default encrypted fields plus those the server at `url` requires encrypted.
async function encryptedFields(url) {
  const response = await fetch(`${url}/rest/v1/crypto/configuration`);
  if (!response.ok) throw new Error(`GET /rest/v1/crypto/configuration: ${response.status} ${await response.text()}`);
  const required = (await response.json()).icureEncryptedFields;
  return {
    patient: adding(DEFAULT_ENCRYPTED_FIELDS.patient, required.Patient),
    contact: adding(DEFAULT_ENCRYPTED_FIELDS.contact, required.Contact),
    service: adding(DEFAULT_ENCRYPTED_FIELDS.service, required.Service),
  };
}

const tag = () => new CodeStub({ id: "IC-TEST|TEST|1", type: "IC-TEST", code: "TEST", version: "1" });

function service(text, tagged) {
  return new DecryptedService({
    id: randomUUID(),
    tags: tagged ? [tag()] : [],
    content: { en: new DecryptedContent({ stringValue: text }) },
  });
}

async function writeContact(sdk, patient, svc) {
  const contact = new DecryptedContact({ id: randomUUID(), openingDate: 20240101120000, services: [svc] });
  return sdk.contact.createContact(await sdk.contact.withEncryptionMetadata(contact, patient));
}

// "Connected", "Reconnected", "ClosedByServer", "EntityNotification"... as the Python client names them.
const kind = (event) => event.$ktClass.split(".").pop();

const forSelf = () => ServiceFilters.byTagAndValueDateForSelf("IC-TEST", { tagCode: "TEST" });

async function content(sdk, event) {
  const svc = await sdk.contact.decryptService(event.entity);
  return {
    id: svc.id,
    contactId: svc.contactId,
    tags: svc.tags.map((t) => `${t.type}|${t.code}`).sort(),
    content: Object.fromEntries(Object.entries(svc.content).map(([lang, c]) => [lang, c.stringValue])),
  };
}

async function run(config) {
  const result = { connected: [], events: [], other_events: [] };
  result.encrypted_fields = await encryptedFields(config.url);
  const sdk = await CardinalSdk.initialize(
    undefined,
    config.url,
    new AuthenticationMethod.UsingCredentials.UsernamePassword(config.login, config.password),
    StorageFacade.usingFileSystem(config.storage),
    { encryptedFields: result.encrypted_fields },
  );
  const user = await sdk.user.getCurrentUser();
  result.user = { login: user.login, healthcarePartyId: user.healthcarePartyId };

  const patient = await sdk.patient.createPatient(
    await sdk.patient.withEncryptionMetadata(
      new DecryptedPatient({ id: randomUUID(), firstName: "John", lastName: "Snow", note: "Winter is coming" }),
    ),
  );
  result.patient = {
    id: patient.id,
    firstName: patient.firstName,
    lastName: patient.lastName,
    note: patient.note,
    rev: patient.rev,
  };

  const subscription = await sdk.contact.subscribeToServiceCreateOrUpdateEvents(forSelf());
  const first = await subscription.waitForEvent(20000);
  result.connected.push(first === null ? null : kind(first));

  // Settle: write tagged probes until one comes back, so that the subscription is live on the server.
  result.probes = 0;
  let settled = false;
  while (!settled && result.probes < MAX_PROBES) {
    const probe = service("probe", true);
    await writeContact(sdk, patient, probe);
    result.probes += 1;
    const deadline = Date.now() + PROBE_MS;
    while (!settled && deadline - Date.now() > 0) {
      const event = await subscription.waitForEvent(deadline - Date.now());
      if (event === null) break;
      if (event instanceof NOTIFICATION) settled = event.entity.id === probe.id;
      else result.connected.push(kind(event));
    }
  }
  result.settled = settled;
  // Events of earlier probes that arrive late are not the guide's.
  for (let late; (late = await subscription.waitForEvent(500)) !== null; ) result.other_events.push(kind(late));

  const untagged = service("Not for you", false);
  const tagged = service("Hello world", true);
  const untaggedContact = await writeContact(sdk, patient, untagged);
  const taggedContact = await writeContact(sdk, patient, tagged);
  result.written = {
    untagged: untagged.id,
    tagged: tagged.id,
    tagged_contact: taggedContact.id,
    untagged_contact: untaggedContact.id,
    tagged_contact_rev: taggedContact.rev,
    tagged_contact_services: taggedContact.services.map((s) => s.id),
  };
  for (let event = await subscription.waitForEvent(20000); event !== null; event = await subscription.waitForEvent(QUIET_MS)) {
    if (event instanceof NOTIFICATION) result.events.push(await content(sdk, event));
    else result.other_events.push(kind(event));
  }

  // The contact modified (modifyContact, PUT /rest/v2/contact): its service's content becomes 'Hello again', and
  // the subscription gets exactly one UPDATE, that service's.
  const helloAgain = { en: new DecryptedContent({ stringValue: "Hello again" }) };
  const again = new DecryptedService({ ...taggedContact.services[0], content: helloAgain });
  const modified = await sdk.contact.modifyContact(new DecryptedContact({ ...taggedContact, services: [again] }));
  result.modified_contact = {
    rev: modified.rev,
    services: modified.services.map((s) =>
      Object.fromEntries(Object.entries(s.content).map(([lang, c]) => [lang, c.stringValue])),
    ),
  };
  result.modified_events = [];
  for (let event = await subscription.waitForEvent(20000); event !== null; event = await subscription.waitForEvent(QUIET_MS)) {
    if (event instanceof NOTIFICATION) result.modified_events.push(await content(sdk, event));
    else result.other_events.push(kind(event));
  }

  // What a client re-reads after a reconnect (iCure's socket cannot resume): the services the filter selects.
  result.matched = (await sdk.contact.matchServicesBy(forSelf())).sort();
  const found = await sdk.contact.getServices([tagged.id, untagged.id]);
  result.read_back = Object.fromEntries(
    found.map((s) => [s.id, Object.fromEntries(Object.entries(s.content).map(([lang, c]) => [lang, c.stringValue]))]),
  );

  await subscription.close();
  result.close_reason = subscription.closeReason ?? null;
  return result;
}

let result;
try {
  result = await run(config);
} catch (error) {
  // The test shows what failed, with the stack.
  result = { error: `${error?.name}: ${error?.message}`, traceback: String(error?.stack ?? error) };
}
// The client's socket and timers would keep Node running: exit once the result is written.
process.stdout.write(JSON.stringify(result) + "\n", () => process.exit(0));

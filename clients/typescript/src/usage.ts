// How a TypeScript program uses the Backoffice API through the generated types: checked by
// `tsc --noEmit` (tests/clients/test_typescript_client.py), so a change of the document that
// breaks this code fails the suite. `src/schema.d.ts` is generated: `npm run generate`.
import createClient, { type Middleware } from "openapi-fetch";

import type { components, paths } from "./schema";

type ItemOut = components["schemas"]["ItemOut"];
type Shortage = components["schemas"]["Shortage"];

/** A client of the API at `baseUrl` that sends `token` (once logged in) with every request. */
export function backoffice(baseUrl: string, token?: string) {
  const client = createClient<paths>({ baseUrl });
  if (token !== undefined) {
    const bearer: Middleware = {
      onRequest({ request }) {
        request.headers.set("Authorization", `Bearer ${token}`);
        return request;
      },
    };
    client.use(bearer);
  }
  return client;
}

/** Log in: the access token, or the problem's detail. */
export async function logIn(baseUrl: string, email: string, password: string): Promise<string> {
  const { data, error } = await backoffice(baseUrl).POST("/api/auth/token", {
    body: { email, password },
  });
  if (error !== undefined) {
    throw new Error(`${error.status} ${error.title}: ${error.detail}`);
  }
  return data.access_token;
}

/** Create an item once, however often this is retried with the same key. */
export async function createWidget(
  api: ReturnType<typeof backoffice>,
  key: string,
): Promise<{ item: ItemOut; etag: string | null }> {
  const { data, error, response } = await api.POST("/api/items", {
    params: { header: { "Idempotency-Key": key } },
    body: { name: "Widget", description: "A blue widget", quantity: 5 },
  });
  if (error !== undefined) {
    throw new Error(error.detail);
  }
  return { item: data, etag: response.headers.get("ETag") };
}

/** Read an item again only if it changed since `etag`: `null` while it has not (304). */
export async function readIfChanged(
  api: ReturnType<typeof backoffice>,
  itemId: string,
  etag: string,
): Promise<ItemOut | null> {
  const { data, error, response } = await api.GET("/api/items/{item_id}", {
    params: { path: { item_id: itemId }, header: { "If-None-Match": etag } },
  });
  if (response.status === 304) {
    return null;
  }
  if (error !== undefined) {
    throw new Error(error.detail);
  }
  return data ?? null;
}

/** Order `quantity` of an item: the order's id, or what is short (a 409's `shortages`). */
export async function order(
  api: ReturnType<typeof backoffice>,
  itemId: string,
  quantity: number,
): Promise<{ orderId: string } | { short: Shortage[] }> {
  const { data, error } = await api.POST("/api/orders", {
    body: { lines: [{ item_id: itemId, quantity }] },
  });
  if (error === undefined) {
    return { orderId: data.id };
  }
  if ("shortages" in error && error.shortages) {
    const short: Shortage[] = error.shortages;
    for (const { item_id, requested, available } of short) {
      console.warn(`${item_id}: ${available} of ${requested} in stock`);
    }
    return { short };
  }
  throw new Error(`${error.status}: ${error.detail}`);
}

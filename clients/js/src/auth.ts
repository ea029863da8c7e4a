// The headers of every request: the app's own, then `Authorization: Bearer` with the token
// `getToken` gives, asked for each request and again (refresh) when the server says the
// token expired (401, or the `data-token-expired` frame of an open response).

/** Static headers, or a function giving them for each request. */
export type HeadersOption =
  | Record<string, string>
  | Headers
  | (() => Record<string, string> | Headers | Promise<Record<string, string> | Headers>);

/** Gives the token for a request; `refresh` is true when the last one was refused or
 * expired (fetch a new one then). null or "" sends none. */
export type GetToken = (context: {
  /** The last token was refused or expired: give a new one. */
  refresh: boolean;
  /** The chat the request is for (the chat transport's requests). */
  chatId?: string;
}) => string | null | undefined | Promise<string | null | undefined>;

/** What a request carries: headers, and a token. */
export interface AuthOptions {
  headers?: HeadersOption;
  getToken?: GetToken;
}

/** Builds each request's headers; remembers whether the next token must be fresh. */
export class Auth {
  private stale = false;
  private last: string | null | undefined = undefined;

  constructor(
    private readonly options: AuthOptions = {},
    private readonly chatId?: string,
  ) {}

  /** Whether a token is involved at all (else a 401 cannot be cured). */
  get refreshable(): boolean {
    return this.options.getToken !== undefined;
  }

  /** The next token must be a new one. */
  expire(): void {
    this.stale = true;
  }

  /** The headers of a request, `extra` last. With `resend`, the token the last request
   * carried, unless it was refused: the server scopes an Idempotency-Key to its token, so
   * a request sent again must carry the same one. */
  async headers(extra: Record<string, string> = {}, resend = false): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    const given = typeof this.options.headers === "function" ? await this.options.headers() : this.options.headers;
    if (given) new Headers(given).forEach((value, name) => (out[name] = value));
    if (this.options.getToken) {
      const refresh = this.stale;
      this.stale = false;
      if (!resend || refresh || this.last === undefined) {
        this.last = await this.options.getToken(this.chatId === undefined ? { refresh } : { refresh, chatId: this.chatId });
      }
      if (this.last) out.authorization = `Bearer ${this.last}`;
    }
    for (const [name, value] of Object.entries(extra)) out[name.toLowerCase()] = value;
    return out;
  }
}

import { useState, type FormEvent } from "react";
import { USER_NAME } from "../../shared/names";
import { signIn, type Session } from "../session";

export function SignIn({ onSignedIn }: { onSignedIn: (session: Session) => void }) {
  const [name, setName] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (!USER_NAME.test(name.trim())) {
      setError("A name is 1–32 letters, digits, - or _.");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      onSignedIn(await signIn(name.trim()));
    } catch (failure) {
      setError((failure as Error).message);
      setBusy(false);
    }
  };

  return (
    <form className="sign-in" onSubmit={submit}>
      <h1>Lunora chat</h1>
      <p>Pick a name. (Demo only: the name is your token — there are no passwords.)</p>
      <input
        data-testid="sign-in-name"
        autoFocus
        placeholder="your name"
        value={name}
        onChange={(event) => setName(event.target.value)}
        required
      />
      <button data-testid="sign-in-submit" disabled={busy}>
        Join
      </button>
      {error && <p className="error">{error}</p>}
    </form>
  );
}

"""The WSGI entry point for production servers: `backoffice.wsgi:app`."""

from dotenv import load_dotenv

from backoffice import create_app

load_dotenv()
app = create_app()
